"""Load the daemon service (/etc/init/aiida-daemon, a script without .py) as the module `aiida_daemon`.

Inside the image the scripts are in /etc/init; elsewhere AIIDA_DAEMON_INIT names the folder (the
repository's Dockerfiles/aiida-core-base/init by default). Tests that need aiida-core skip
without it, so the pure ones also run on a machine without aiida-core.
"""

import importlib.machinery
import importlib.util
import os
import pathlib
import sys

import pytest


def init_folder() -> pathlib.Path:
    if os.environ.get('AIIDA_DAEMON_INIT'):
        return pathlib.Path(os.environ['AIIDA_DAEMON_INIT'])
    if os.path.isfile('/etc/init/aiida-daemon'):
        return pathlib.Path('/etc/init')
    return pathlib.Path(__file__).resolve().parents[2] / 'Dockerfiles' / 'aiida-core-base' / 'init'


INIT = init_folder()

sys.path.insert(0, str(INIT))


def load_script(module_name: str, script: str):
    """The init script INIT/`script` (no .py) loaded as the module `module_name`."""
    loader = importlib.machinery.SourceFileLoader(module_name, str(INIT / script))
    spec = importlib.util.spec_from_loader(module_name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def load_daemon_module():
    return load_script('aiida_daemon', 'aiida-daemon')


@pytest.fixture(scope='session')
def daemon_module():
    return load_daemon_module()
