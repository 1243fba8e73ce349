"""The quantizer stands alone: no module of it imports archsim, and its registries list without torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imported(path: Path) -> set[str]:
    """Every module ``path`` imports, wherever the import sits (top, function, TYPE_CHECKING block)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_no_quantizer_module_imports_archsim() -> None:
    offenders = sorted(f"{path.relative_to(ROOT)}: {module}"
                       for path in (ROOT / "quantizer").rglob("*.py")
                       for module in _imported(path) if module.split(".")[0] == "archsim")
    assert offenders == []


def test_method_names_and_models_list_without_torch() -> None:
    code = ("import sys\n"
            "from quantizer.methods import method_names, method_origin, method_description\n"
            "from quantizer.zoo import list_models, model_spec\n"
            "assert {'fqvit', 'p2vit', 'trio'} <= set(method_names()), method_names()\n"
            "assert method_origin('trio') == 'quantizer.methods.trio'\n"
            "assert method_description('fqvit').startswith('FQ-ViT')\n"
            "assert 'deit_tiny' in list_models() and model_spec('deit_tiny').origin == 'quantizer.zoo'\n"
            "sys.exit('torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
