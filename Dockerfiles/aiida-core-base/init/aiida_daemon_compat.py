"""Every tie of the aiida-daemon service (/etc/init/aiida-daemon) to internals of aiida-core and circus.

aiida-core offers no supervised foreground daemon: `verdi daemon start-circus --foreground` writes
its own PID file, picks its own socket folder and starts circusd-stats. So the service drives
aiida-core's daemon client from inside, through the members and patches below. They are private
and may change in any release; the image build runs `python aiida_daemon_compat.py --check` right
after installing aiida-core, so that a release without one of them fails the build, naming it,
instead of a user's start-up. Dockerfiles/README.md states the aiida-core range that is tested and
what aiida-core could offer so that this module could shrink.

Private members of `aiida.engine.daemon.client.DaemonClient`:

* `_start_daemon(number_workers, foreground=True)`: circus's arbiter in this very process (what
  `verdi daemon start-circus --foreground` runs), so that aiida-init supervises circus directly.
* `_clean_potentially_stale_pid_file()`: aiida-core's own staleness check of the PID file, run
  before the service claims the file.
* `get_controller_endpoint()`: circus's controller socket, whose file the service waits for
  before its first status call.
* `_write_version_file()` and `_daemon_env_info_file` (aiida-core 2.9 and later; optional
  before): the package versions the daemon runs with, which `verdi daemon status` compares with
  the installed ones. The service removes the last start's file as it starts, and writes its own
  once the daemon answers, as `start_daemon` and `stop_daemon` do.
* `_zmq_broker_service_dir` (aiida-core 2.9 and later, with the ZeroMQ broker only): the folder
  of the broker's status file, which `verdi status` reads; the service reports ready once a
  running broker has written it. It is `Config.filepaths(profile)['broker_service']['dir']`, where
  the images' `aiida-zmq-broker` service (`/etc/init/aiida-zmq-broker --service`) runs the broker
  with the log file beside it (`['log']`). That service finds the folder without loading the
  configuration's model (zmq_broker_of_the_profile): the profile's `PROFILE_UUID` and
  `process_control` from the file, and `AiiDAConfigPathResolver._zmq_broker_service_base_dir`
  joined with `<uuid>-<name>`, as `Config.filepaths` does.

Patches:

* `DaemonClient.get_circus_socket_directory`, replaced on the service's client instance: circus
  binds its sockets in the service's own folder instead of the one the sockets file names (which
  the service itself writes). `_start_daemon` must build its endpoints through it.
* `circus.get_arbiter`, wrapped: a stop timeout per worker, no multicast discovery socket, no
  circusd-stats process. `_start_daemon` must import it from `circus` when it runs (so the
  wrapper is what it calls) and `get_arbiter` must accept those keyword arguments.
* `circus.watcher.Watcher.kill_process` and `circus.watcher.tornado_sleep`, wrapped: the first
  0.1 s wait after circus signals a process to stop ends once the process has ended (checked
  every 0.01 s): a worker ends 10 ms after its SIGTERM. `kill_process` must be a tornado coroutine
  whose first wait is `tornado_sleep(0.1)` between checks of `process.is_alive()`.
* `circus.sighandler.SysHandler.signal`, replaced: the signal handler circus registers hands the
  signal to circus's IOLoop, where circus's own `signal` logs it and acts, instead of doing both
  in the signal handler (see handle_signals_on_the_loop). `SysHandler` must register
  `self.signal` and its controller's `loop` must be a tornado loop on asyncio.
* `circus.pidfile.Pidfile.unlink`, wrapped: the moment circus removes the daemon's PID file as it
  stops is when the service stops repairing its files and asks aiida-init to keep it down.
* The log filter on `tornado.application` drops circus's `ConflictError` (`arbiter_stop`), which
  its periodic watcher check raises while the arbiter stops.
* The ZeroMQ broker's watcher (aiida-core 2.9 and later): named `<daemon name>-zmq-broker-service`,
  its command `verdi -p PROFILE daemon broker --service-dir DIR --log-file-path FILE`, whose verdi
  is replaced by /etc/init/aiida-zmq-broker (it does what
  `aiida.brokers.zeromq.service.run_broker_service` does, with a shorter poll timeout); a watcher
  of another shape is left as aiida-core made it. Where aiida-init runs the broker as its own
  service, the watcher is left out.
* The workers' watcher: its command `verdi -p PROFILE daemon worker`, whose verdi is replaced by
  /etc/init/aiida-daemon-worker (it calls `aiida.engine.daemon.worker.start_daemon_worker`
  itself); a watcher of another shape is left as aiida-core made it.

A deferred import (defer_ssh_tunnels): circus.util imports pyzmq's SSH tunnels (`zmq.ssh`, which
imports paramiko and pexpect) for arbiters reached over SSH. The daemon's arbiter is local, so the
module is registered to load at its first use. Should circus stop importing it, nothing changes.
(It works because circus imports it as `from zmq import ssh`: a plain `import yaml` or `import
urllib.request` would load a module registered so at once, as the import system reads its spec.)

`sys.modules` surgery (import_daemon_client, import_configuration_reader): the packages
`aiida.engine` and `aiida.engine.daemon` are registered without running their `__init__`, which
imports the whole engine (0.7 s of CPU), so that `aiida.engine.daemon.client` loads alone; so are
`aiida.cmdline` and `aiida.cmdline.utils`, whose `__init__` imports all of verdi's parameter types
and groups (0.015-0.03 s), so that `aiida.cmdline.utils.echo`, which reading the configuration
file imports (`Config.from_file`), loads alone. load_bare_packages() runs them later for the
lost-task repair. The ZeroMQ broker service (/etc/init/aiida-zmq-broker --service) does the same
for `aiida.brokers.zeromq.service` (import_zmq_broker_service) and for aiida-core's settings module
(zmq_broker_of_the_profile), so that its status file is written before the configuration's model
(pydantic) is loaded, beside the running broker, for its logging. A layout where this fails falls
back to the plain import, so it is not a hard requirement, but the check reports it.

Ties that are no attributes, also checked where they can be:

* a daemon process is recognised by `start-circus` on its command line (aiida-core's check of a
  PID file), so the service runs as `aiida-daemon start-circus`;
* the workers' command line (`verdi -p PROFILE daemon worker`, and `daemon broker` for ZeroMQ),
  by which workers orphaned by a killed circus are found;
* `aiida.engine.processes.control.get_active_processes` and `get_process_tasks` and the
  manager's `get_process_controller().continue_process`, for the lost-task repair (what
  `verdi process repair` does);
* psycopg 3, which aiida-core depends on since 2.7 (2.6: psycopg2), with which the watchdog asks
  PostgreSQL when it started.
"""

import functools
import importlib
import importlib.util
import inspect
import json
import logging
import re
import shlex
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


class MissingInternal(RuntimeError):
    """An internal of aiida-core or circus that the daemon service needs is not there."""


# --- the daemon client's private members --------------------------------------------------------


def _member(client, name: str):
    try:
        return getattr(client, name)
    except AttributeError:
        raise MissingInternal(f'aiida-core has no DaemonClient.{name}, which the daemon service needs') from None


def start_daemon_in_foreground(client, number_workers: int) -> None:
    """Circus and its workers in this process, until circus stops."""
    _member(client, '_start_daemon')(number_workers=number_workers, foreground=True)


def clean_stale_pid_file(client) -> None:
    _member(client, '_clean_potentially_stale_pid_file')()


def write_version_file(client) -> None:
    """The version snapshot of `verdi daemon status` (aiida-core 2.9 and later; nothing before)."""
    write = getattr(client, '_write_version_file', None)
    if write is not None:
        write()


def remove_version_file(client) -> None:
    """The version snapshot of the daemon's last start removed, as `verdi daemon stop` removes it
    (aiida-core 2.9 and later; nothing before): until this start's is written, `verdi daemon status`
    compares none."""
    import os

    try:
        os.unlink(client._daemon_env_info_file)
    except Exception:  # noqa: BLE001 - none there, no such member, or none configured (ConfigurationError)
        pass


def zmq_broker_status_file(client) -> str:
    """The ZeroMQ broker's status file (only asked for a profile with the ZeroMQ broker)."""
    import os

    return os.path.join(_member(client, '_zmq_broker_service_dir'), 'broker.status')


def bind_sockets_in(client, directory: str) -> None:
    """Circus started through `client` binds its sockets in `directory`."""
    client.get_circus_socket_directory = lambda: directory


# --- circus -------------------------------------------------------------------------------------


def is_zmq_broker_watcher(watcher: dict) -> bool:
    """True for the ZeroMQ broker's watcher."""
    return str(watcher.get('name', '')).endswith('-zmq-broker-service')


def zmq_broker_without_verdi(watcher: dict, command: list[str]) -> None:
    """The ZeroMQ broker's watcher runs `command` with verdi's arguments in place of verdi."""
    if is_zmq_broker_watcher(watcher):
        _without_verdi(watcher, ['daemon', 'broker'], command, more_arguments=True)


def worker_without_verdi(watcher: dict, command: list[str]) -> None:
    """The workers' watcher (`verdi -p PROFILE daemon worker`) runs `command` with verdi's
    arguments in place of verdi."""
    _without_verdi(watcher, ['daemon', 'worker'], command, more_arguments=False)


def _without_verdi(watcher: dict, subcommand: list[str], command: list[str], more_arguments: bool) -> None:
    """`verdi -p PROFILE SUBCOMMAND` (with more arguments after it, if `more_arguments`) becomes
    `command -p PROFILE SUBCOMMAND ...`."""
    words = shlex.split(watcher.get('cmd') or '')
    rest = words[3:5] if more_arguments else words[3:]
    if words[1:2] == ['-p'] and rest == subcommand:
        watcher['cmd'] = shlex.join([*command, *words[1:]])


def wrap_get_arbiter(configure) -> None:
    """`configure(watchers, kwargs)` changes the arbiter's configuration before circus makes it."""
    import circus

    get_arbiter = circus.get_arbiter

    def get_arbiter_configured(*args, **kwargs):
        watchers = kwargs['watchers'] if 'watchers' in kwargs else args[0]
        configure(watchers, kwargs)
        return get_arbiter(*args, **kwargs)

    circus.get_arbiter = get_arbiter_configured


def check_stopping_processes_every(interval: float) -> None:
    """circus's `Watcher.kill_process` signals a process, then checks every 0.1 s whether it has
    ended, and sends SIGKILL once `graceful_timeout` has passed. A worker ends about 10 ms after
    its SIGTERM, so a stop waited most of 0.1 s for nothing. Here the first of those waits ends as
    soon as the process has ended, checked every `interval` seconds. The later waits, and the
    count towards SIGKILL, are circus's own."""
    import time

    from circus import watcher as circus_watcher
    from tornado import gen
    from tornado.concurrent import Future
    from tornado.ioloop import IOLoop

    sleep = circus_watcher.tornado_sleep
    kill_process = circus_watcher.Watcher.kill_process
    first_waits = None  # a list while kill_process runs up to its first wait

    def sleep_that_can_end_early(duration):
        wait = sleep(duration)
        if first_waits is None:
            return wait
        early = Future()
        IOLoop.current().add_future(wait, lambda _: early.done() or early.set_result(None))
        first_waits.append(early)
        return early

    @gen.coroutine
    @functools.wraps(kill_process)  # the check below still reads circus's source
    def kill_process_checking_often(self, process, *args, **kwargs):
        nonlocal first_waits
        first_waits = waits = []
        try:
            # A coroutine runs up to its first wait in this call.
            killing = kill_process(self, process, *args, **kwargs)
        finally:
            first_waits = None
        if waits:
            deadline = time.monotonic() + 1
            while not waits[0].done() and time.monotonic() < deadline:
                if not process.is_alive():
                    waits[0].set_result(None)
                    break
                yield gen.sleep(interval)
        result = yield killing
        raise gen.Return(result)

    circus_watcher.tornado_sleep = sleep_that_can_end_early
    circus_watcher.Watcher.kill_process = kill_process_checking_often


def handle_signals_on_the_loop() -> None:
    """circus's `SysHandler.signal` logs the signal ('Got signal SIG_TERM') and acts on it inside
    the Python signal handler. A signal that lands while the main thread writes to stderr (circus
    logs there) runs that handler with stderr's buffer locked: the log call raises `RuntimeError:
    reentrant call`, the handler stops before it asks the arbiter to quit, and the daemon outlives
    its grace time, to be killed by aiida-init. Here the signal handler only hands the signal to
    circus's IOLoop (`call_soon_threadsafe`, which is safe in a signal handler: it is how asyncio
    delivers signals), where circus's own handler then logs and acts."""
    from circus.sighandler import SysHandler

    handle = SysHandler.signal

    def hand_to_the_loop(self, sig, frame=None):
        try:
            self.controller.loop.asyncio_loop.call_soon_threadsafe(handle, self, sig)
        except RuntimeError:  # the loop is closed: circus is gone already
            pass

    SysHandler.signal = hand_to_the_loop


def on_pidfile_unlink(hook) -> None:
    """`hook(unlink)` runs instead of each removal of a circus PID file; it calls `unlink()`."""
    from circus.pidfile import Pidfile

    unlink = Pidfile.unlink

    def unlink_with_hook(pidfile):
        hook(lambda: unlink(pidfile))

    Pidfile.unlink = unlink_with_hook


def drop_conflicts_while_stopping(record) -> bool:
    """Circus checks its watchers every second from a timer; while it stops (its `quit` command
    or a stop signal, which take as long as the workers take to stop), each check is refused
    with a ConflictError that tornado logs as an error with its traceback: expected, harmless,
    and read by users as a failure. Those records are dropped; any other error is kept."""
    from circus.exc import ConflictError

    error = record.exc_info[1] if record.exc_info else None
    return not (isinstance(error, ConflictError) and 'arbiter_stop' in str(error))


def quiet_conflicts_while_stopping() -> None:
    logging.getLogger('tornado.application').addFilter(drop_conflicts_while_stopping)


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
    _import_alone(*CONFIGURATION_SETTINGS)
    settings = sys.modules[CONFIGURATION_SETTINGS[0]]
    if not hasattr(getattr(settings, 'AiiDAConfigPathResolver', None), '_zmq_broker_service_base_dir'):
        return None  # an aiida-core older than its ZeroMQ broker (2.9)
    folder = settings.AiiDAConfigDir.get()
    try:
        with open(folder / 'config.json', encoding='utf8') as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return None
    return zmq_broker_in(config, settings.AiiDAConfigPathResolver(folder), name)


def zmq_broker_in(config, resolver, name: str | None) -> tuple[str, str, str] | None:
    """zmq_broker_of_the_profile() for the configuration file's content `config` and aiida-core's
    `AiiDAConfigPathResolver` of its folder: aiida-core's test of a daemon's broker (backend
    `core.zeromq`, `supervised_by_daemon` not false), and the folder that
    `Config.filepaths(profile)['broker_service']` names (`<uuid>-<name>` in the resolver's
    `_zmq_broker_service_base_dir`), with the log file in it."""
    try:
        name = name or config['default_profile']
        profile = config['profiles'][name]
        control = profile['process_control']
        uuid = profile['PROFILE_UUID']
    except (KeyError, TypeError):
        return None
    if control.get('backend') != 'core.zeromq' or not (control.get('config') or {}).get('supervised_by_daemon', True):
        return None
    service_dir = resolver._zmq_broker_service_base_dir / f'{uuid}-{name}'
    return name, str(service_dir), str(service_dir / 'broker.log')


def defer_ssh_tunnels() -> None:
    """Register pyzmq's SSH tunnels (`zmq.ssh`) to load at their first use (importlib's LazyLoader),
    not when circus imports them: paramiko and pexpect cost about 0.05 s of CPU at every start of
    the daemon, whose arbiter is local. Left as it is where the module is already loaded or is not
    a source module."""
    if 'zmq.ssh' in sys.modules:
        return
    import zmq

    spec = importlib.util.find_spec('zmq.ssh')
    if spec is None or not hasattr(spec.loader, 'exec_module'):
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules['zmq.ssh'] = module
    zmq.ssh = module
    spec.loader.exec_module(module)


def load_bare_packages() -> None:
    """Run the __init__ of the packages registered bare (once), for the parts of the watchdog that
    use the rest of aiida-core's engine."""
    while bare_packages:
        importlib.reload(sys.modules[bare_packages.pop()])


# --- the check the image build runs ---------------------------------------------------------------


def aiida_version() -> tuple[int, ...]:
    import aiida

    return tuple(int(part) for part in aiida.__version__.split('.')[:2] if part.isdigit())


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
    """One line per internal above that the installed aiida-core or circus lacks (empty: all there)."""
    missing = []

    def need(condition: bool, what: str) -> None:
        if not condition:
            missing.append(what)

    try:
        import circus
        import circus.exc
        import circus.pidfile
    except ImportError as error:
        return [f'circus cannot be imported: {error}']
    from aiida.engine.daemon import client as client_module
    from aiida.engine.daemon.client import DaemonClient

    def source(function) -> str:
        try:
            return inspect.getsource(function)
        except (OSError, TypeError):
            return ''

    def property_source(name: str) -> str:
        return source(getattr(getattr(DaemonClient, name, None), 'fget', None))

    for name in ('_start_daemon', '_clean_potentially_stale_pid_file', 'get_circus_socket_directory',
                 'get_controller_endpoint'):
        need(callable(getattr(DaemonClient, name, None)), f'aiida-core: DaemonClient.{name}')
    for name in ('circus_pid_file', 'circus_socket_file', 'daemon_name', 'call_client', 'get_daemon_pid'):
        need(hasattr(DaemonClient, name), f'aiida-core: DaemonClient.{name}')
    need(callable(getattr(client_module, 'get_daemon_client', None)), 'aiida-core: get_daemon_client')
    start = source(getattr(DaemonClient, '_start_daemon', None))
    client_source = source(DaemonClient)
    need(
        bool(start) and 'foreground' in inspect.signature(DaemonClient._start_daemon).parameters,
        'aiida-core: DaemonClient._start_daemon(foreground=...)',
    )
    need(
        'from circus import get_arbiter' in start,
        'aiida-core: DaemonClient._start_daemon importing circus.get_arbiter when it runs',
    )
    need(
        'pidfile.unlink()' in start,
        'aiida-core: DaemonClient._start_daemon removing its PID file with Pidfile.unlink',
    )
    need(
        client_source.count('self.get_circus_socket_directory()') >= 2,
        'aiida-core: the circus endpoints built through DaemonClient.get_circus_socket_directory()',
    )
    if aiida_version() >= (2, 9):
        for name in ('_write_version_file', '_daemon_env_info_file'):
            need(hasattr(DaemonClient, name), f'aiida-core: DaemonClient.{name}')
    if importlib.util.find_spec('aiida.brokers.zeromq') is not None:
        need(
            "filepaths(self.profile)['broker_service']['dir']" in property_source('_zmq_broker_service_dir')
            and "filepaths(self.profile)['broker_service']['log']" in property_source('_zmq_broker_service_log_file'),
            "aiida-core: DaemonClient._zmq_broker_service_dir and _log_file from "
            "Config.filepaths(profile)['broker_service']",
        )
        need(
            "-zmq-broker-service'" in client_source
            and re.search(r"'daemon',\s*'broker',", client_source) is not None,
            'aiida-core: the ZeroMQ broker watcher `<daemon>-zmq-broker-service` running `verdi -p P daemon broker`',
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

    parameters = inspect.signature(circus.get_arbiter).parameters
    for name in ('watchers', 'multicast_endpoint', 'statsd', 'stats_endpoint'):
        need(name in parameters, f'circus: get_arbiter({name}=...)')
    need(callable(getattr(circus.pidfile.Pidfile, 'unlink', None)), 'circus: circus.pidfile.Pidfile.unlink')
    import circus.controller
    import circus.sighandler
    from tornado.platform.asyncio import BaseAsyncIOLoop

    need(
        'signal.signal(sig, self.signal)' in source(getattr(circus.sighandler.SysHandler, '_register', None))
        and callable(getattr(circus.sighandler.SysHandler, 'signal', None)),
        'circus: SysHandler._register installing SysHandler.signal as the signal handler',
    )
    need(
        'self.loop = loop' in source(getattr(circus.controller.Controller, '__init__', None))
        and 'self.asyncio_loop = ' in source(getattr(BaseAsyncIOLoop, 'initialize', None)),
        "circus: the controller's loop (Controller.loop), a tornado loop on asyncio (.asyncio_loop)",
    )
    need(hasattr(circus.exc, 'ConflictError'), 'circus: circus.exc.ConflictError')
    import circus.watcher

    need(
        callable(getattr(circus.watcher, 'tornado_sleep', None))
        and all(
            step in source(getattr(circus.watcher.Watcher, 'kill_process', None))
            for step in ('@gen.coroutine', 'process.is_alive()', 'yield tornado_sleep(0.1)')
        ),
        'circus: Watcher.kill_process, a coroutine waiting with circus.watcher.tornado_sleep(0.1) for '
        'process.is_alive() to be false',
    )

    for module, packages in (DAEMON_CLIENT, CONFIGURATION_ECHO):
        for name in (*packages, module):
            need(importlib.util.find_spec(name) is not None, f'aiida-core: {name}')
    from aiida.engine.processes import control

    for name in ('get_active_processes', 'get_process_tasks'):
        need(callable(getattr(control, name, None)), f'aiida-core: aiida.engine.processes.control.{name}')
    need(
        importlib.util.find_spec('psycopg') is not None,
        'psycopg 3 (aiida-core 2.7 and later), for the PostgreSQL start time the watchdog reads',
    )
    need('start-circus' in client_source, "aiida-core: a daemon's process recognised by `start-circus`")
    need(
        "'daemon', 'worker']" in client_source,
        'aiida-core: workers started as `verdi -p PROFILE daemon worker`',
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
