"""Architecture configuration: YAML files validated into frozen, typed models."""
from archsim.config.load import ArchConfig, load_config, parse_override

__all__ = ["ArchConfig", "load_config", "parse_override"]
