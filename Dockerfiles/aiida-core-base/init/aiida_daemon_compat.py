"""Every tie of the aiida-daemon service (/etc/init/aiida-daemon) and the ZeroMQ broker service
(/etc/init/aiida-zmq-broker) to internals of aiida-core.

aiida-core offers no supervised foreground daemon: `verdi daemon start-circus --foreground` writes
its own PID file, picks its own socket folder and starts circusd-stats. So the service runs the
daemon as aiida-core would find it, through the ties below. They are private and may change in any
release; the image build runs `python aiida_daemon_compat.py --check` right after installing
aiida-core, so that a release without one of them fails the build, naming it, instead of a user's
start-up. Dockerfiles/README.md states the aiida-core range that is tested and what aiida-core could
offer so that this module could shrink.

The daemon's files (daemon_profile, daemon_files_in), found without loading the configuration's
model (pydantic): config.json read as JSON, the folders from aiida-core's settings module
(`AiiDAConfigDir`, `AiiDAConfigPathResolver.daemon_dir`, `.daemon_log_dir` and, aiida-core 2.9 and
later, `._zmq_broker_service_base_dir`) or, for the releases in FOLDER_FOUND_HERE, found the same way
without importing aiida-core (configuration_folder, ConfigFolders; configuration_folders_agree
compares them for a series of AIIDA_PATH values), the names as `Config.filepaths(profile)` gives them:
`circus-<name>.pid` and `.sockets` in the daemon folder, `circus.c.sock` in the sockets folder,
`aiida-<name>.log` in the daemon's log folder for the workers' output, `aiida-<name>-env-info.json`
(2.9) for the package versions `verdi daemon status` compares, and `<uuid>-<name>` in the broker
folder for the ZeroMQ broker's status file and log. The daemon's circus name is
`DaemonClient._DAEMON_NAME` (`aiida-<name>`). The check compares all of them with `Config.filepaths`
for a made-up profile (daemon_files_agree, zmq_broker_folders_agree).

Other ties:

* a daemon process is recognised by `start-circus` or `circusd` on its command line
  (`DaemonClient._check_pid_file`), so the service runs as `aiida-daemon start-circus` and owns
  the PID file, and `aiida-init circusd` carries its name;
* the workers run as `verdi -p PROFILE daemon worker` (the image: /etc/init/aiida-daemon-worker with
  the same arguments) with `DaemonClient.get_env()`'s environment (PATH, PYTHONPATH, AIIDA_PATH,
  PYTHONUNBUFFERED), and the ZeroMQ broker as `verdi -p PROFILE daemon broker --service-dir DIR`
  (/etc/init/aiida-zmq-broker): by those command lines workers orphaned by a killed daemon are found;
* `DaemonClient._write_version_file()` and `_daemon_env_info_file` (aiida-core 2.9 and later;
  optional before), written once the daemon answers, as `start_daemon` does;
* `aiida.brokers.zeromq.service.run_broker_service`, which /etc/init/aiida-zmq-broker repeats;
* `aiida.engine.processes.control.get_active_processes` and `get_process_tasks` and the
  manager's `get_process_controller().continue_process`, for the lost-task repair (what
  `verdi process repair` does);
* psycopg 3, which aiida-core depends on since 2.7 (2.6: psycopg2), with which the watchdog asks
  PostgreSQL when it started.

`sys.modules` surgery (import_daemon_client, import_configuration_reader, import_settings): the
packages `aiida.engine` and `aiida.engine.daemon` are registered without running their `__init__`,
which imports the whole engine (0.7 s of CPU), so that `aiida.engine.daemon.client` loads alone; so
are `aiida.cmdline` and `aiida.cmdline.utils`, whose `__init__` imports all of verdi's parameter
types and groups (0.015-0.03 s), so that `aiida.cmdline.utils.echo`, which reading the
configuration file imports (`Config.from_file`), loads alone. load_bare_packages() runs them later
for the lost-task repair. The ZeroMQ broker service does the same for `aiida.brokers.zeromq.service`
(import_zmq_broker_service), and both services for aiida-core's settings module, so that the
broker's status file is written and the daemon is ready before the configuration's model is
loaded. A layout where this fails falls back to the plain import, so it is not a hard requirement,
but the check reports it.
"""

import importlib
import json
import os
import sys

DAEMON_CLIENT = ('aiida.engine.daemon.client', ('aiida.engine', 'aiida.engine.daemon'))
"""The module that import_daemon_client() imports alone, and the packages above it that it
registers without their __init__."""
CONFIGURATION_ECHO = ('aiida.cmdline.utils.echo', ('aiida.cmdline', 'aiida.cmdline.utils'))
"""The same for import_configuration_reader()."""
ZMQ_BROKER_SERVICE = ('aiida.brokers.zeromq.service', ('aiida.brokers', 'aiida.brokers.zeromq'))
"""The same for import_zmq_broker_service(): the ZeroMQ broker's service module, whose packages'
__init__ import both brokers' clients (kiwipy, asyncio, psutil, pydantic: about 0.1 s of CPU)."""
CONFIGURATION_SETTINGS = ('aiida.manage.configuration.settings', ('aiida.manage', 'aiida.manage.configuration'))
"""The same for zmq_broker_of_the_profile(): aiida-core's settings module (the configuration folder
from AIIDA_PATH, and its subfolders), whose packages' __init__ import the configuration's model
(pydantic: about 0.1 s of CPU)."""
bare_packages: list[str] = []
"""The packages registered without their __init__, in the order they were registered."""


# --- the daemon's profile and files, without loading aiida-core's configuration model ---------


class Record:
    """A record of keyword fields (its subclass's `__slots__`, with `DEFAULTS`), compared and
    printed by them: what dataclasses makes, without importing dataclasses and inspect (about 7 ms
    of CPU at every start of the daemon, which imports nothing else that needs them)."""

    __slots__ = ()
    DEFAULTS: dict = {}

    def __init__(self, **fields) -> None:
        for name in self.__slots__:
            if name in fields:
                setattr(self, name, fields.pop(name))
            elif name in self.DEFAULTS:
                setattr(self, name, self.DEFAULTS[name])
            else:
                raise TypeError(f'{type(self).__name__}: missing field {name!r}')
        if fields:
            raise TypeError(f'{type(self).__name__}: unknown fields {sorted(fields)}')

    def __eq__(self, other) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __repr__(self) -> str:
        fields = ', '.join(f'{name}={getattr(self, name)!r}' for name in self.__slots__)
        return f'{type(self).__name__}({fields})'


class DaemonFiles(Record):
    """The files of a profile's daemon, as `Config.filepaths(profile)` and the daemon client name
    them (daemon_files_agree() checks that they still do):

    * `pid`: `circus-<name>.pid`, the daemon's PID (a process whose command line holds
      `start-circus` or `circusd`);
    * `sockets`: `circus-<name>.sockets`, the folder of the daemon's controller socket;
    * `workers_log`: `log/aiida-<name>.log`, the workers' output;
    * `env_info`: `aiida-<name>-env-info.json`, the package versions the daemon runs with
      (aiida-core 2.9);
    * `broker_dir`: the ZeroMQ broker's folder (its status file `broker.status`, its log
      `broker.log`), for a profile whose daemon runs a ZeroMQ broker; None for any other."""

    __slots__ = ('pid', 'sockets', 'workers_log', 'env_info', 'broker_dir')
    DEFAULTS = {'broker_dir': None}

    CONTROLLER = 'circus.c.sock'
    """The controller socket's name in the sockets folder (`['circus']['socket']['controller']`)."""

    @property
    def broker_status(self) -> str | None:
        return None if self.broker_dir is None else os.path.join(self.broker_dir, 'broker.status')

    @property
    def broker_log(self) -> str | None:
        return None if self.broker_dir is None else os.path.join(self.broker_dir, 'broker.log')


class DaemonProfile(Record):
    """What the daemon service needs of a profile, read from config.json as JSON: its `name`,
    `config_folder`, `storage`, `process_control`, `options` (the profile's over the
    configuration's global ones) and `files` (DaemonFiles)."""

    __slots__ = ('name', 'config_folder', 'storage', 'process_control', 'options', 'files')

    def option(self, key: str, default):
        value = self.options.get(key)
        return default if value is None else value


def import_settings():
    """aiida-core's settings module, imported alone (see CONFIGURATION_SETTINGS)."""
    _import_alone(*CONFIGURATION_SETTINGS)
    return sys.modules[CONFIGURATION_SETTINGS[0]]


# --- the configuration folder, found without aiida-core -----------------------------------------

FOLDER_FOUND_HERE = ((2, 7), (2, 9))
"""The aiida-core releases (first and last major.minor) whose settings module finds the configuration
folder as configuration_folder() does; the build's check (configuration_folders_agree) and
tests/python compare the two. With another release, the daemon asks aiida-core's settings module."""


def release_of(version: str) -> tuple[int, ...]:
    """(major, minor) of an aiida-core version (`2.9.4`: (2, 9)), without the parts that are not
    numbers."""
    return tuple(int(part) for part in version.split('.')[:2] if part.isdigit())


def folder_found_here_for(release: tuple[int, ...]) -> bool:
    """True when aiida-core release `release` (release_of) is in FOLDER_FOUND_HERE."""
    return len(release) == 2 and FOLDER_FOUND_HERE[0] <= release <= FOLDER_FOUND_HERE[1]


def finds_folder_as_aiida_core(installations: list[str]) -> bool:
    """True when `installations` (the paths of the aiida_core-*.dist-info folders on the module
    search path) is a single aiida-core of a release in FOLDER_FOUND_HERE."""
    if len(installations) != 1:
        return False
    return folder_found_here_for(release_of(os.path.basename(installations[0]).removeprefix('aiida_core-')))


def configuration_folder() -> str:
    """The configuration folder that aiida-core's settings module names at its import
    (`AiiDAConfigDir.get()`), found the same way without importing it, which imports aiida-core's
    package and `aiida.common` (about 22 ms of CPU at every start of the daemon): the first entry of
    AIIDA_PATH (colon-separated, empty entries skipped, `~` expanded) whose `.aiida` folder exists
    (an entry that ends in `.aiida` is that folder), else the last entry's; without AIIDA_PATH,
    `~/.aiida`. The path as pathlib prints it (without importing pathlib either). Nothing is made
    (see ConfigFolders.make_daemon_folders)."""
    found = None
    for entry in (entry for entry in os.environ.get('AIIDA_PATH', '').split(':') if entry):
        found = _as_pathlib_prints(os.path.expanduser(_as_pathlib_prints(entry)))
        if os.path.basename(found) != '.aiida':
            found = os.path.join(found, '.aiida')
        if os.path.isdir(found):
            break
    return found or os.path.join(_as_pathlib_prints(os.path.expanduser('~')), '.aiida')


def _as_pathlib_prints(path: str) -> str:
    """`path` as `str(pathlib.Path(path))` gives it: no empty or `.` parts, no trailing slash, two
    leading slashes kept (POSIX)."""
    root = '//' if path[:2] == '//' and path[:3] != '///' else '/' if path[:1] == '/' else ''
    return root + '/'.join(part for part in path.split('/') if part not in ('', '.')) or '.'


class ConfigFolders:
    """The folders in configuration folder `folder` that aiida-core's `AiiDAConfigPathResolver`
    names, under its attribute names (daemon_files_in takes either)."""

    def __init__(self, folder: str) -> None:
        self.daemon_dir = os.path.join(folder, 'daemon')
        self.daemon_log_dir = os.path.join(self.daemon_dir, 'log')
        self._zmq_broker_service_base_dir = os.path.join(folder, 'broker')

    def make_daemon_folders(self) -> None:
        """The daemon's folders (its PID, sockets and log files'), made if missing as aiida-core's
        settings module makes them at its import (mode 700)."""
        for folder in (self.daemon_dir, self.daemon_log_dir):
            try:
                os.mkdir(folder, 0o700)
            except FileExistsError:
                pass


def read_configuration(folder_found_here: bool = False):
    """(the configuration folder; its ConfigFolders, or aiida-core's `AiiDAConfigPathResolver` for
    it; config.json's content read as JSON or None when it cannot be read). The folder is
    configuration_folder()'s if `folder_found_here` (see finds_folder_as_aiida_core), else the one
    aiida-core's settings module names (importing it makes the folder and the ones in it)."""
    if folder_found_here:
        folder = configuration_folder()
        folders = ConfigFolders(folder)
    else:
        settings = import_settings()
        folder = settings.AiiDAConfigDir.get()
        folders = settings.AiiDAConfigPathResolver(folder)
    try:
        with open(os.path.join(folder, 'config.json'), encoding='utf8') as handle:
            return folder, folders, json.load(handle)
    except (OSError, ValueError):
        return folder, folders, None


def daemon_profile(name: str | None, folder_found_here: bool = False) -> DaemonProfile | None:
    """Profile `name` (None, or one that does not exist: the default profile) as the daemon service
    needs it, from the configuration folder that aiida-core finds (AIIDA_PATH, else ~/.aiida; see
    read_configuration for `folder_found_here`), with the standard library only, or with aiida-core's
    settings module; None without a configuration file or a profile. Where the folder is found
    here, the daemon's folders are made if missing. load_bare_packages() before the rest of
    aiida.manage is used."""
    folder, folders, config = read_configuration(folder_found_here)
    if config is None:
        return None
    try:
        profiles = config.get('profiles') or {}
        if name not in profiles:
            name = config.get('default_profile')
        profile = profiles[name]
        uuid = profile.get('PROFILE_UUID', '')
    except (KeyError, TypeError, AttributeError):
        return None
    if folder_found_here:
        folders.make_daemon_folders()
    options = {**(config.get('options') or {}), **(profile.get('options') or {})}
    process_control = profile.get('process_control') or {}
    return DaemonProfile(
        name=name,
        config_folder=str(folder),
        storage=profile.get('storage') or {},
        process_control=process_control,
        options=options,
        files=daemon_files_in(folders, name, uuid, process_control),
    )


def daemon_files_in(resolver, name: str, uuid: str, process_control: dict) -> DaemonFiles:
    """The daemon's files of profile `name` in the folders of aiida-core's `AiiDAConfigPathResolver`."""
    return DaemonFiles(
        pid=os.path.join(resolver.daemon_dir, f'circus-{name}.pid'),
        sockets=os.path.join(resolver.daemon_dir, f'circus-{name}.sockets'),
        workers_log=os.path.join(resolver.daemon_log_dir, f'aiida-{name}.log'),
        env_info=os.path.join(resolver.daemon_dir, f'aiida-{name}-env-info.json'),
        broker_dir=zmq_broker_dir(resolver, name, uuid, process_control),
    )


def daemon_files_agree() -> bool:
    """True when daemon_files_in() names the files that aiida-core's `Config.filepaths` and daemon
    client name, for a profile made up here (nothing is written)."""
    from aiida.engine.daemon.client import DaemonClient
    from aiida.manage.configuration.config import Config
    from aiida.manage.configuration.profile import Profile
    from aiida.manage.configuration.settings import AiiDAConfigDir, AiiDAConfigPathResolver

    control = {'backend': 'core.zeromq', 'config': {}}
    attributes = {
        'PROFILE_UUID': '0123456789abcdef',
        'storage': {'backend': 'core.sqlite_dos', 'config': {}},
        'process_control': control,
    }
    folder = AiiDAConfigDir.get()
    try:
        config = Config(str(folder / 'config.json'), {'profiles': {}}, validate=False)
        paths = config.filepaths(Profile('check', attributes))
        found = daemon_files_in(AiiDAConfigPathResolver(folder), 'check', attributes['PROFILE_UUID'], control)
        agree = (
            found.pid == paths['circus']['pid']
            and found.sockets == paths['circus']['socket']['file']
            and found.CONTROLLER == paths['circus']['socket']['controller']
            and found.workers_log == paths['daemon']['log']
        )
        if aiida_version() >= (2, 9):
            agree = agree and found.env_info == paths['daemon']['daemon_env_info']
            agree = agree and found.broker_dir == paths['broker_service']['dir']
        return agree and getattr(DaemonClient, '_DAEMON_NAME', None) == 'aiida-{name}'
    except Exception:  # noqa: BLE001 - any failure is a layout this module does not know
        return False


def write_version_file(client) -> None:
    """The version snapshot of `verdi daemon status` (aiida-core 2.9 and later; nothing before)."""
    write = getattr(client, '_write_version_file', None)
    if write is not None:
        write()


# --- imports ------------------------------------------------------------------------------------


def import_daemon_client() -> None:
    """Import aiida-core's daemon client module alone. The package `aiida.engine` imports the whole
    engine when it is imported (processes, ORM, SQLAlchemy, alembic: about 0.7 s of CPU at every
    start), although the client module needs none of it. So the packages of DAEMON_CLIENT are
    registered without running their __init__ (nothing else in this process imports them before
    load_bare_packages()), and only the client module is loaded. Should aiida-core's layout
    change, the plain import."""
    _import_alone(*DAEMON_CLIENT)


def import_configuration_reader() -> None:
    """Import what reading aiida-core's configuration file needs (`get_config`), without verdi's
    parameters and groups: `Config.from_file` imports `aiida.cmdline.utils.echo`, whose packages'
    __init__ import all of them. As import_daemon_client() does, with CONFIGURATION_ECHO."""
    _import_alone(*CONFIGURATION_ECHO)
    import aiida.manage.configuration.config  # noqa: F401


def _import_alone(module: str, packages: tuple[str, ...]) -> None:
    """`module` imported with the `packages` above it registered without their __init__."""
    import importlib.util

    import aiida  # noqa: F401

    registered = []
    try:
        for name in packages:
            if name in sys.modules:
                continue  # already imported whole
            spec = importlib.util.find_spec(name)
            package = importlib.util.module_from_spec(spec)
            sys.modules[name] = package
            parent, _, child = name.rpartition('.')
            setattr(sys.modules[parent], child, package)
            registered.append(name)
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - another layout: the whole packages, as any client loads them
        for name in reversed(registered):
            sys.modules.pop(name, None)
        sys.modules.pop(module, None)
        importlib.import_module(module)
    else:
        bare_packages.extend(registered)


def import_zmq_broker_service():
    """aiida-core's ZeroMQ broker service module, imported alone (see ZMQ_BROKER_SERVICE)."""
    _import_alone(*ZMQ_BROKER_SERVICE)
    return sys.modules[ZMQ_BROKER_SERVICE[0]]


def zmq_broker_of_the_profile(name: str | None) -> tuple[str, str, str] | None:
    """(profile name, broker folder, broker log file) of profile `name` (None: the default one) when
    its daemon runs a ZeroMQ broker; None for any other profile, for none, or without a readable
    configuration file. Found without loading the configuration's model: the file is read as JSON,
    the folders come from aiida-core's settings module alone (see CONFIGURATION_SETTINGS;
    load_bare_packages() before the rest of aiida.manage is used)."""
    _, folders, config = read_configuration()
    if config is None:
        return None
    return zmq_broker_in(config, folders, name)


def zmq_broker_in(config, resolver, name: str | None) -> tuple[str, str, str] | None:
    """zmq_broker_of_the_profile() for the configuration file's content `config` and aiida-core's
    `AiiDAConfigPathResolver` of its folder: the folder of zmq_broker_dir(), with the log file in it."""
    try:
        name = name or config['default_profile']
        profile = config['profiles'][name]
        control = profile['process_control']
        uuid = profile['PROFILE_UUID']
    except (KeyError, TypeError):
        return None
    service_dir = zmq_broker_dir(resolver, name, uuid, control)
    return None if service_dir is None else (name, service_dir, os.path.join(service_dir, 'broker.log'))


def zmq_broker_dir(resolver, name: str, uuid: str, process_control: dict) -> str | None:
    """The ZeroMQ broker's folder of profile `name` when its daemon runs one (aiida-core's test:
    backend `core.zeromq`, `supervised_by_daemon` not false): `<uuid>-<name>` in the
    `_zmq_broker_service_base_dir` of aiida-core's `AiiDAConfigPathResolver`, as
    `Config.filepaths(profile)['broker_service']['dir']` names it; None otherwise."""
    config = process_control.get('config') or {}
    if process_control.get('backend') != 'core.zeromq' or not config.get('supervised_by_daemon', True):
        return None
    base = getattr(resolver, '_zmq_broker_service_base_dir', None)
    if base is None:
        return None  # an aiida-core older than its ZeroMQ broker (2.9)
    return os.path.join(base, f'{uuid}-{name}')


def load_bare_packages() -> None:
    """Run the __init__ of the packages registered bare (once), for the parts of the watchdog that
    use the rest of aiida-core's engine."""
    while bare_packages:
        importlib.reload(sys.modules[bare_packages.pop()])


# --- the check the image build runs ---------------------------------------------------------------


def aiida_version() -> tuple[int, ...]:
    import aiida

    return release_of(aiida.__version__)


def configuration_folders_agree() -> bool:
    """True when configuration_folder() names the folder that aiida-core's settings module finds
    (`AiiDAConfigDir.set()`, then `.get()`) for each of a series of AIIDA_PATH values, in a
    temporary folder that is also HOME meanwhile (set() makes the folder it finds)."""
    import tempfile
    import warnings

    from aiida.manage.configuration.settings import AiiDAConfigDir

    before = AiiDAConfigDir.get()
    environment = {name: os.environ.get(name) for name in ('AIIDA_PATH', 'HOME')}
    working_directory = os.getcwd()
    try:
        with tempfile.TemporaryDirectory() as home, warnings.catch_warnings():
            warnings.simplefilter('ignore')  # 'Creating AiiDA configuration folder ...', as intended
            os.chdir(home)  # for the relative entries
            os.mkdir(os.path.join(home, 'has'))
            os.mkdir(os.path.join(home, 'has', '.aiida'))
            values = (
                None, '', '~', '~/has', 'has', './has/', f'{home}/has', f'{home}/has/.aiida', f'{home}//has/./.aiida/',
                f'{home}/no:{home}/has', f'{home}/has:{home}/no', f'{home}/no:{home}/none', f'::{home}/has::',
                f'{home}/new.aiida', f'{home}/none:{home}/no', f'/{home}/has', f'//{home}/has',
            )  # fmt: skip
            for home_value, value in ((h, v) for h in (home, f'{home}//', f'{home}/.') for v in values):
                os.environ['HOME'] = home_value
                if value is None:
                    os.environ.pop('AIIDA_PATH', None)
                else:
                    os.environ['AIIDA_PATH'] = value
                found = configuration_folder()  # before set(), which may make the folder
                AiiDAConfigDir.set()
                if found != str(AiiDAConfigDir.get()):
                    return False
        return True
    except Exception:  # noqa: BLE001 - any failure is a settings module this module does not know
        return False
    finally:
        os.chdir(working_directory)
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        AiiDAConfigDir.set(before)


def zmq_broker_folders_agree() -> bool:
    """True when zmq_broker_in() finds the broker folder and log file that aiida-core's
    `Config.filepaths` names, for a profile made up here (nothing is written)."""
    from aiida.manage.configuration.config import Config
    from aiida.manage.configuration.profile import Profile
    from aiida.manage.configuration.settings import AiiDAConfigDir, AiiDAConfigPathResolver

    attributes = {
        'PROFILE_UUID': '0123456789abcdef',
        'storage': {'backend': 'core.sqlite_dos', 'config': {}},
        'process_control': {'backend': 'core.zeromq', 'config': {}},
    }
    folder = AiiDAConfigDir.get()
    try:
        config = Config(str(folder / 'config.json'), {'profiles': {}}, validate=False)
        expected = config.filepaths(Profile('check', attributes))['broker_service']
    except Exception:  # noqa: BLE001 - any failure is a layout this module does not know
        return False
    found = zmq_broker_in({'profiles': {'check': attributes}}, AiiDAConfigPathResolver(folder), 'check')
    return found == ('check', expected['dir'], expected['log'])


def missing_internals() -> list[str]:
    """One line per internal above that the installed aiida-core lacks (empty: all there)."""
    import importlib.util
    import inspect
    import re

    missing = []

    def need(condition: bool, what: str) -> None:
        if not condition:
            missing.append(what)

    def source(function) -> str:
        try:
            return inspect.getsource(function)
        except (OSError, TypeError):
            return ''

    def property_source(name: str) -> str:
        """The source of DaemonClient's property or method `name`."""
        member = inspect.getattr_static(DaemonClient, name, None)
        return source(getattr(member, 'fget', member))

    for module, packages in (DAEMON_CLIENT, CONFIGURATION_ECHO, CONFIGURATION_SETTINGS):
        for name in (*packages, module):
            need(importlib.util.find_spec(name) is not None, f'aiida-core: {name}')
    from aiida.engine.daemon import client as client_module
    from aiida.engine.daemon.client import DaemonClient

    for name in ('daemon_name', 'call_client', 'get_status', 'get_daemon_pid'):
        need(hasattr(DaemonClient, name), f'aiida-core: DaemonClient.{name}')
    need(callable(getattr(client_module, 'get_daemon_client', None)), 'aiida-core: get_daemon_client')
    if aiida_version() >= (2, 9):
        for name in ('_write_version_file', '_daemon_env_info_file'):
            need(hasattr(DaemonClient, name), f'aiida-core: DaemonClient.{name}')
    if folder_found_here_for(aiida_version()):
        need(
            configuration_folders_agree(),
            'aiida-core: the configuration folder found from AIIDA_PATH (AiiDAConfigDir) as configuration_folder() '
            'finds it (or the release out of FOLDER_FOUND_HERE)',
        )
    need(
        daemon_files_agree(),
        "aiida-core: the daemon's files (Config.filepaths: circus pid and sockets, circus.c.sock, the "
        "workers' log, the version file, the ZeroMQ broker's folder) and its name `aiida-<profile>` "
        'as daemon_files_in() finds them',
    )
    client_source = source(DaemonClient)
    need(
        all(word in property_source('_check_pid_file') for word in ('start-circus', 'circusd')),
        "aiida-core: a daemon's process recognised by `start-circus` or `circusd` on its command line",
    )
    need(
        "'daemon', 'worker']" in client_source,
        'aiida-core: workers started as `verdi -p PROFILE daemon worker`',
    )
    need(
        all(
            f"env['{name}']" in source(getattr(DaemonClient, 'get_env', None))
            for name in ('PATH', 'PYTHONPATH', 'AIIDA_PATH', 'PYTHONUNBUFFERED')
        ),
        "aiida-core: the workers' environment (DaemonClient.get_env: PATH, PYTHONPATH, AIIDA_PATH, "
        'PYTHONUNBUFFERED), which the service gives them',
    )
    if importlib.util.find_spec('aiida.brokers.zeromq') is not None:
        need(
            re.search(r"'daemon',\s*'broker',", client_source) is not None,
            'aiida-core: the ZeroMQ broker run as `verdi -p P daemon broker --service-dir DIR`',
        )
        need(
            zmq_broker_folders_agree(),
            "aiida-core: Config.filepaths(profile)['broker_service'] as zmq_broker_in() finds it",
        )
        from aiida.brokers.zeromq import service

        run_broker_service = source(getattr(service, 'run_broker_service', None))
        need(
            all(
                step in run_broker_service
                for step in ('ZeromqBrokerService(service_dir=service_dir, log_file_path=log_file_path)',
                             'configure_logging(daemon=True, daemon_log_file=service.log_file)', 'run_forever()')
            )
            and 'poll_timeout' in inspect.signature(service.ZeromqBrokerService.run_forever).parameters,
            'aiida-core: aiida.brokers.zeromq.service.run_broker_service as /etc/init/aiida-zmq-broker repeats it '
            '(ZeromqBrokerService, configure_logging, run_forever(poll_timeout=...))',
        )
    from aiida.engine.processes import control

    for name in ('get_active_processes', 'get_process_tasks'):
        need(callable(getattr(control, name, None)), f'aiida-core: aiida.engine.processes.control.{name}')
    need(
        importlib.util.find_spec('psycopg') is not None,
        'psycopg 3 (aiida-core 2.7 and later), for the PostgreSQL start time the watchdog reads',
    )
    return missing


def main(argv: list[str]) -> int:
    if argv != ['--check']:
        print('usage: aiida_daemon_compat.py --check', file=sys.stderr)
        return 2
    import warnings

    warnings.filterwarnings('ignore', message='Creating AiiDA configuration folder')
    import aiida

    missing = missing_internals()
    for what in missing:
        print(f'aiida_daemon_compat: missing internal: {what}', file=sys.stderr)
    if missing:
        print(
            f'aiida_daemon_compat: aiida-core {aiida.__version__} lacks what the daemon service needs '
            '(Dockerfiles/aiida-core-base/init/aiida_daemon_compat.py lists why)',
            file=sys.stderr,
        )
        return 1
    print(f'aiida_daemon_compat: aiida-core {aiida.__version__}: every internal the daemon service uses is there')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
