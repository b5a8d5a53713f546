//! AiiDA plugin metadata: name, aiida-core and Python requirements, extras (pyproject.toml,
//! setup.cfg, setup.py).
