"""nerfstudio integration: normalized field components, models and dataparsers.

The method specifications that ``ns-train`` lists live in :mod:`nerf_norm.method_configs`; this package holds
what they are built from. Importing it imports nerfstudio and changes no process-wide setting: our models let
torch read nerfstudio's checkpoints when they are built (:mod:`nerf_norm.nerfstudio.checkpoints`).
"""
