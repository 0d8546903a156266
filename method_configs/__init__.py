"""nerfstudio method specifications of nerf_norm (installed as ``nerf_norm.method_configs``).

Importing them (nerfstudio does, through the entry points) makes our input errors end ``ns-train`` with one
line instead of a traceback (:func:`nerf_norm.errors.install_user_error_hook`).
"""

from nerf_norm.errors import install_user_error_hook

install_user_error_hook()
