"""nerfstudio method specifications of nerf_norm (installed as ``nerf_norm.method_configs``)."""
