"""Sphinx configuration of the nerf_norm documentation (nerfstudio's toolchain: Sphinx, furo, MyST markdown).

Build: ``.venv/bin/sphinx-build -W -b html docs docs/_build/html`` (warnings are errors; ``.ci/run`` does this and
then checks every internal link of the built site with ``docs/check_links.py``).
"""

project = "nerf_norm"
author = "the nerf_norm developers"
copyright = "2026, the nerf_norm developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "analysis/**", "generated/*.md"]  # generated tables are included by the pages


autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_mock_imports = []

html_theme = "furo"
html_title = "nerf_norm"
html_static_path = []
html_show_sourcelink = False
