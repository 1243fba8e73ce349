"""Post-training quantization of ViTs (FQ-ViT, P2-ViT, Trio-ViT, PackQViT).

Not implemented yet: until it lands, archsim takes bit widths and scale kinds from the config's ``defaults``.
"""
