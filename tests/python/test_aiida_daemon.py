"""Unit tests of the daemon service (/etc/init/aiida-daemon) and its compatibility module.

They run inside the built image (tests/it/daemon_python.rs), against the image's aiida-core and
the oldest aiida-core the images claim to support. Nothing here starts `aiida-init circusd` or a
worker: where the service runs aiida-init (circusd, `s6-svc`, `wait`), a fake first on PATH stands
in for it, and the watchdog's decisions are driven with fake clients, clocks and aiida-core
functions. What the service reads from /proc is read for real child processes (`sleep`, Python).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import aiida_daemon_compat as compat
import pytest


def make_profile(folder, name='default', broker_dir=None, **changes):
    """A DaemonProfile whose files are in `folder` (a profile on PostgreSQL and RabbitMQ unless
    `changes` say otherwise), as compat.daemon_profile() makes them."""
    daemon_dir = folder / 'daemon'
    attributes = {
        'name': name,
        'config_folder': str(folder),
        'storage': {'backend': 'core.psql_dos', 'config': {}},
        'process_control': {'backend': 'core.rabbitmq', 'config': {}},
        'options': {},
        'files': compat.DaemonFiles(
            pid=str(daemon_dir / f'circus-{name}.pid'),
            sockets=str(daemon_dir / f'circus-{name}.sockets'),
            workers_log=str(daemon_dir / 'log' / f'aiida-{name}.log'),
            env_info=str(daemon_dir / f'aiida-{name}-env-info.json'),
            broker_dir=None if broker_dir is None else str(broker_dir),
        ),
    }
    attributes.update(changes)
    return compat.DaemonProfile(**attributes)


@pytest.fixture
def profile(tmp_path):
    return make_profile(tmp_path)


@pytest.fixture
def daemon(daemon_module, profile):
    service = daemon_module.Daemon(profile)
    yield service
    shutil.rmtree(service.socket_directory, ignore_errors=True)


@pytest.fixture
def children():
    """Child processes started by a test (subprocess.Popen), killed and reaped after it."""
    started = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait()


def start(children, command, **kwargs):
    child = subprocess.Popen(command, **kwargs)
    children.append(child)
    return child


def wait_until(condition, timeout=10.0):
    """True once `condition()` is, False if it still is not after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def ended(pid):
    """True when `pid` is gone or a zombie (a killed grandchild is left to a PID 1 that may not
    reap it)."""
    try:
        with open(f'/proc/{pid}/stat', encoding='utf8') as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] in ('Z', 'X')
    except OSError:
        return True


def child_of(daemon_module, parent, command):
    """The PID of the child process of `parent` that runs `command` (once it does: a child shows
    its parent's command line until its exec)."""
    found = []

    def look():
        found[:] = [
            pid for pid in daemon_module.all_pids()
            if daemon_module.parent_of(pid) == parent and daemon_module.command_line(pid) == command
        ]  # fmt: skip
        return len(found) == 1

    assert wait_until(look), f'no child of {parent} runs {command}'
    return found[0]


def running(daemon_module, child):
    """`child` (a Popen) once /proc shows its command line (a new process briefly shows none)."""
    assert wait_until(lambda: daemon_module.command_line(child.pid) == list(child.args)), child.args
    return child


def fake_aiida_init(tmp_path, monkeypatch, exit_code=0):
    """An `aiida-init` first on PATH that appends its arguments to a file and exits with
    `exit_code`; returns a function that gives the calls made so far."""
    calls = tmp_path / 'aiida-init-calls'
    fake = tmp_path / 'bin' / 'aiida-init'
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(f'#!/bin/sh\necho "$*" >>"{calls}"\nexit {exit_code}\n')
    fake.chmod(0o755)
    monkeypatch.setenv('PATH', f'{fake.parent}:{os.environ["PATH"]}')
    return lambda: calls.read_text().splitlines() if calls.exists() else []


def read(path):
    with open(path, encoding='utf8') as handle:
        return handle.read()


def has_zmq_broker() -> bool:
    """True when the aiida-core under test has the ZeroMQ broker (2.9 and later)."""
    import importlib.util

    return importlib.util.find_spec('aiida.brokers.zeromq') is not None


# --- processes, from /proc ----------------------------------------------------------------------


def test_the_command_line_and_parent_of_a_process_and_of_one_that_ended(daemon_module, children):
    child = running(daemon_module, start(children, [sys.executable, '-c', 'import time; time.sleep(60)', 'a word']))
    assert daemon_module.command_line(child.pid) == [sys.executable, '-c', 'import time; time.sleep(60)', 'a word']
    assert daemon_module.parent_of(child.pid) == os.getpid()
    assert child.pid in daemon_module.all_pids()
    child.kill()
    assert wait_until(lambda: daemon_module.command_line(child.pid) == [])  # a zombie
    child.wait()
    assert daemon_module.command_line(child.pid) == []
    assert daemon_module.parent_of(child.pid) is None
    assert daemon_module.process_start_time(child.pid) is None


def test_a_process_start_time_is_the_one_psutil_gives(daemon_module):
    psutil = pytest.importorskip('psutil')
    assert abs(daemon_module.process_start_time(os.getpid()) - psutil.Process().create_time()) < 1.5
    assert daemon_module.process_start_time(os.getpid()) <= time.time()


def test_a_daemon_is_a_process_with_start_circus_or_circusd_on_its_command_line(daemon_module, children):
    sleeper = 'import time; time.sleep(60)'
    for word in ('start-circus', 'circusd'):
        child = running(daemon_module, start(children, [sys.executable, '-c', sleeper, word]))
        assert daemon_module.is_daemon(child.pid)
    child = running(daemon_module, start(children, [sys.executable, '-c', sleeper, 'start-circus-not']))
    assert not daemon_module.is_daemon(child.pid)
    assert not daemon_module.is_daemon(os.getpid())


def fake_verdi(tmp_path):
    """A Python script named verdi that sleeps: as `python .../verdi -p P daemon worker`, it looks
    like a worker of profile P."""
    verdi = tmp_path / 'verdi'
    verdi.write_text('import time\ntime.sleep(60)\n')
    return verdi


def test_a_worker_whose_parent_is_no_daemon_is_an_orphan_of_its_profile_only(daemon_module, tmp_path, children):
    name = f'orphan-{os.getpid()}'
    worker = [sys.executable, str(fake_verdi(tmp_path)), '-p', name, 'daemon', 'worker']
    child = running(daemon_module, start(children, worker))
    broker = [sys.executable, str(fake_verdi(tmp_path)), '-p', name, 'daemon', 'broker', '--service-dir', 'd']
    broker_child = running(daemon_module, start(children, broker))
    assert sorted(daemon_module.orphans_of(name)) == sorted([child.pid, broker_child.pid])
    assert daemon_module.orphans_of(f'{name}-other') == []
    assert daemon_module.orphans_of(name[:-1]) == []
    # The same arguments after another program are no worker.
    other = running(daemon_module, start(children, [sys.executable, '-c', 'import time; time.sleep(60)', '-p',
                                                    f'{name}-python', 'daemon', 'worker']))
    assert daemon_module.orphans_of(f'{name}-python') == []
    assert other.poll() is None


def test_a_worker_of_a_running_daemon_is_no_orphan(daemon_module, tmp_path, children):
    name = f'kept-{os.getpid()}'
    worker = [sys.executable, str(fake_verdi(tmp_path)), '-p', name, 'daemon', 'worker']
    # A parent whose command line holds the word `circusd`, as `aiida-init circusd ...` does.
    code = f'import subprocess; subprocess.run({worker!r})'
    parent = running(daemon_module, start(children, [sys.executable, '-c', code, 'circusd']))
    worker_pid = child_of(daemon_module, parent.pid, worker)
    assert daemon_module.orphans_of(name) == []
    daemon_module.kill_tree(parent.pid)
    assert wait_until(lambda: ended(worker_pid))


def test_stopping_the_orphans_ends_them_and_nothing_else(daemon_module, tmp_path, children, capsys):
    name = f'stopped-{os.getpid()}'
    worker = running(daemon_module, start(children, [sys.executable, str(fake_verdi(tmp_path)), '-p', name, 'daemon',
                                                     'worker']))
    other = running(daemon_module, start(children, [sys.executable, str(fake_verdi(tmp_path)), '-p', f'{name}-other',
                                                    'daemon', 'worker']))
    began = time.monotonic()
    daemon_module.stop_orphans(name)
    assert worker.wait(timeout=10) == -signal.SIGTERM
    assert time.monotonic() - began < daemon_module.WORKER_STOP_TIMEOUT  # its end seen, not waited for
    assert other.poll() is None
    assert f'stopping a daemon worker left by a killed daemon (PID {worker.pid})' in capsys.readouterr().err
    daemon_module.stop_orphans(name)  # none left: nothing to do


def test_a_process_that_ignores_sigterm_is_killed_after_the_timeout(daemon_module, children):
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); " \
           'time.sleep(60)'
    child = start(children, [sys.executable, '-c', code], stdout=subprocess.PIPE)
    assert child.stdout.readline() == b'ready\n'
    began = time.monotonic()
    daemon_module.stop_processes([child.pid], timeout=0.3)
    assert child.wait(timeout=10) == -signal.SIGKILL
    assert 0.3 <= time.monotonic() - began < 5
    daemon_module.stop_processes([child.pid], timeout=0.1)  # gone: nothing to do


def test_killing_a_tree_kills_the_process_and_the_processes_below_it(daemon_module, children):
    shell = running(daemon_module, start(children, ['sh', '-c', 'sleep 60 & wait']))
    sleeper = child_of(daemon_module, shell.pid, ['sleep', '60'])
    daemon_module.kill_tree(shell.pid)
    assert shell.wait(timeout=10) == -signal.SIGKILL
    assert wait_until(lambda: ended(sleeper))


# --- aiida-init -----------------------------------------------------------------------------------


@pytest.mark.parametrize(('exit_code', 'ready'), [(0, True), (2, False)])
def test_services_are_ready_as_aiida_init_reports_them_without_waiting(
    daemon_module, monkeypatch, tmp_path, exit_code, ready
):
    calls = fake_aiida_init(tmp_path, monkeypatch, exit_code)
    assert daemon_module.services_ready(('rabbitmq', 'other')) is ready
    assert calls() == ['wait --timeout 0 rabbitmq other']


def test_without_aiida_init_to_ask_no_service_counts_as_booting(daemon_module, monkeypatch):
    monkeypatch.setenv('PATH', '/nonexistent')
    assert daemon_module.services_ready(('rabbitmq',))


def test_a_service_is_defined_when_aiida_init_lists_it(daemon_module, monkeypatch, tmp_path):
    status = {'services': [{'name': 'aiida-daemon'}, {'name': 'aiida-zmq-broker'}]}
    fake = tmp_path / 'aiida-init'
    fake.write_text(f"#!/bin/sh\n[ \"$*\" = 'status --json' ] && echo '{json.dumps(status)}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv('PATH', f'{tmp_path}:{os.environ["PATH"]}')
    assert daemon_module.service_defined('aiida-zmq-broker')
    assert not daemon_module.service_defined('rabbitmq')
    fake.write_text('#!/bin/sh\necho not json\n')
    assert not daemon_module.service_defined('aiida-zmq-broker')
    monkeypatch.setenv('PATH', '/nonexistent')
    assert not daemon_module.service_defined('aiida-zmq-broker')


# --- the CPU priority of aiida-core's imports ---------------------------------------------------


class ImportsBegan(Exception):
    """Raised by the first import step of the fake, once the thread's priority is recorded."""


def priority_of_the_import_thread(daemon_module, monkeypatch, idle):
    """(scheduling policy, nice value) of the thread that runs load_aiida_core(idle) as its
    imports begin (compat.load_bare_packages, its first step, stops them there)."""
    seen = []

    def first_import_step():
        seen.append((os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        raise ImportsBegan

    monkeypatch.setattr(compat, 'load_bare_packages', first_import_step)
    failed = []

    def load():
        try:
            daemon_module.load_aiida_core(idle)
        except ImportsBegan:
            failed.append(True)

    thread = threading.Thread(target=load)
    thread.start()
    thread.join()
    assert failed == [True]
    return seen[0]


def test_the_imports_run_at_the_idle_policy_while_a_service_they_give_way_to_boots(daemon_module, monkeypatch):
    policy, niceness = priority_of_the_import_thread(daemon_module, monkeypatch, idle=True)
    assert policy == os.SCHED_IDLE
    assert niceness == os.getpriority(os.PRIO_PROCESS, threading.get_native_id())  # left as it was
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the thread's only


def test_the_imports_run_at_import_niceness_otherwise(daemon_module, monkeypatch):
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    policy, niceness = priority_of_the_import_thread(daemon_module, monkeypatch, idle=False)
    assert (policy, niceness) == (os.SCHED_OTHER, daemon_module.IMPORT_NICENESS)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before  # the thread's only


# --- the profile, from config.json ----------------------------------------------------------------


@pytest.fixture
def config_folder(monkeypatch, tmp_path):
    """AIIDA_PATH at `tmp_path`, whose `.aiida` aiida-core's settings module names from now on (put
    back after the test); the packages above it are imported whole first, so that no other test
    finds them bare."""
    pytest.importorskip('aiida')
    import aiida.manage.configuration  # noqa: F401

    settings = compat.import_settings()
    folder = tmp_path / '.aiida'
    folder.mkdir()
    monkeypatch.setattr(settings.AiiDAConfigDir, '_glb_aiida_config_folder', settings.AiiDAConfigDir.get())
    monkeypatch.setenv('AIIDA_PATH', str(tmp_path))
    settings.AiiDAConfigDir.set()
    assert settings.AiiDAConfigDir.get() == folder
    return folder


@pytest.fixture(params=[False, True], ids=['settings module', 'found here'])
def found_here(request):
    """daemon_profile()'s `folder_found_here`: the configuration folder from aiida-core's settings
    module, or found without it."""
    return request.param


def write_config(folder, **profiles):
    config = {
        'CONFIG_VERSION': {'CURRENT': 9, 'OLDEST_COMPATIBLE': 9},
        'default_profile': 'p',
        'profiles': profiles,
        'options': {'daemon.default_workers': 1, 'daemon.timeout': 5},
    }
    (folder / 'config.json').write_text(json.dumps(config))


RABBITMQ = {'backend': 'core.rabbitmq', 'config': {'broker_host': 'rmq', 'broker_port': 5673}}
STORAGE = {'backend': 'core.psql_dos', 'config': {'database_hostname': 'db', 'database_port': 5432}}


def test_the_daemons_profile_is_read_from_the_configuration_file(config_folder, found_here):
    write_config(
        config_folder,
        p={'PROFILE_UUID': 'u1', 'storage': STORAGE, 'process_control': RABBITMQ,
           'options': {'daemon.default_workers': 3}},
        q={'PROFILE_UUID': 'u2', 'storage': STORAGE, 'process_control': RABBITMQ},
    )  # fmt: skip
    daemon_dir = config_folder / 'daemon'
    assert compat.daemon_profile('p', found_here) == compat.DaemonProfile(
        name='p',
        config_folder=str(config_folder),
        storage=STORAGE,
        process_control=RABBITMQ,
        options={'daemon.default_workers': 3, 'daemon.timeout': 5},  # the profile's over the global ones
        files=compat.DaemonFiles(
            pid=f'{daemon_dir}/circus-p.pid',
            sockets=f'{daemon_dir}/circus-p.sockets',
            workers_log=f'{daemon_dir}/log/aiida-p.log',
            env_info=f'{daemon_dir}/aiida-p-env-info.json',
            broker_dir=None,
        ),
    )
    other = compat.daemon_profile('q', found_here)
    assert (other.name, other.files.pid, other.options) == (
        'q',
        f'{daemon_dir}/circus-q.pid',
        {'daemon.default_workers': 1, 'daemon.timeout': 5},
    )
    assert other.option('daemon.default_workers', 7) == 1 and other.option('daemon.worker_process_slots', 7) == 7
    assert other.files.broker_status is None and other.files.broker_log is None


@pytest.mark.parametrize('name', [None, 'missing'])
def test_a_profile_not_named_or_that_does_not_exist_is_the_default_one(config_folder, found_here, name):
    write_config(
        config_folder,
        p={'PROFILE_UUID': 'u1', 'storage': STORAGE, 'process_control': RABBITMQ},
        q={'PROFILE_UUID': 'u2', 'storage': STORAGE, 'process_control': RABBITMQ},
    )
    found = compat.daemon_profile(name, found_here)
    assert (found.name, found.files.sockets) == ('p', f'{config_folder}/daemon/circus-p.sockets')


def test_no_configuration_file_or_no_profile_means_no_profile(config_folder, found_here):
    assert compat.daemon_profile(None, found_here) is None
    assert compat.daemon_profile('p', found_here) is None
    (config_folder / 'config.json').write_text('{"profiles": ')
    assert compat.daemon_profile('p', found_here) is None
    (config_folder / 'config.json').write_text(json.dumps({'profiles': {}, 'default_profile': None}))
    assert compat.daemon_profile(None, found_here) is None
    write_config(config_folder)  # `p` is the default profile, but there is none
    assert compat.daemon_profile('p', found_here) is None


def test_a_profile_on_the_zmq_broker_names_its_folder(config_folder, found_here):
    if not has_zmq_broker():
        return  # aiida-core 2.7 and 2.8 have no ZeroMQ broker
    zeromq = {'backend': 'core.zeromq', 'config': {}}
    unsupervised = {'backend': 'core.zeromq', 'config': {'supervised_by_daemon': False}}
    write_config(
        config_folder,
        p={'PROFILE_UUID': 'u1', 'storage': STORAGE, 'process_control': zeromq},
        own={'PROFILE_UUID': 'u2', 'storage': STORAGE, 'process_control': unsupervised},
    )
    files = compat.daemon_profile('p', found_here).files
    broker = config_folder / 'broker' / 'u1-p'
    assert (files.broker_dir, files.broker_status, files.broker_log) == (
        str(broker),
        str(broker / 'broker.status'),
        str(broker / 'broker.log'),
    )
    assert compat.daemon_profile('own', found_here).files.broker_dir is None  # a broker not the daemon's


def test_the_daemons_profile_is_read_without_the_configuration_model(daemon_module, tmp_path, found_here):
    """Without pydantic's model, and, where the folder is found here, without any of aiida-core."""
    pytest.importorskip('aiida')
    (tmp_path / '.aiida').mkdir()
    write_config(tmp_path / '.aiida', p={'PROFILE_UUID': 'u1', 'storage': STORAGE, 'process_control': RABBITMQ})
    code = (
        'import sys, aiida_daemon_compat as c\n'
        f"profile = c.daemon_profile('p', {found_here})\n"
        'print(profile.name, profile.files.pid)\n'
        "print('pydantic' in sys.modules, 'aiida.manage.configuration.config' in sys.modules)\n"
        "print('aiida' in sys.modules)\n"
    )
    lines = lines_printed_by_a_new_python(code, AIIDA_PATH=str(tmp_path))
    assert lines == [f'p {tmp_path}/.aiida/daemon/circus-p.pid', 'False False', str(not found_here)]
    # The daemon's folders were made (mode 700) either way.
    for folder in (tmp_path / '.aiida' / 'daemon', tmp_path / '.aiida' / 'daemon' / 'log'):
        assert folder.is_dir() and folder.stat().st_mode & 0o777 == 0o700


def test_the_configuration_folder_is_found_here_as_aiida_core_finds_it(daemon_module, monkeypatch):
    pytest.importorskip('aiida')
    if not compat.folder_found_here_for(compat.aiida_version()):
        pytest.fail(f'aiida-core {compat.aiida_version()} is out of FOLDER_FOUND_HERE: the suite runs in it')
    before = (os.environ.get('AIIDA_PATH'), os.environ.get('HOME'), os.getcwd())
    assert compat.configuration_folders_agree() is True
    assert (os.environ.get('AIIDA_PATH'), os.environ.get('HOME'), os.getcwd()) == before  # all put back
    found = compat.configuration_folder

    def without_the_first_existing_entry():
        folder = found()
        return folder.parent / 'elsewhere' / '.aiida' if 'has' in str(folder) else folder

    monkeypatch.setattr(compat, 'configuration_folder', without_the_first_existing_entry)
    assert compat.configuration_folders_agree() is False


@pytest.mark.parametrize(
    ('installations', 'found_here'),
    [
        (['/opt/aiida/lib/python3.11/site-packages/aiida_core-2.9.4.dist-info'], True),
        (['/x/aiida_core-2.7.5.dist-info'], True),
        (['/x/aiida_core-2.8.0.dist-info'], True),
        (['/x/aiida_core-2.6.4.dist-info'], False),
        (['/x/aiida_core-2.10.0.dist-info'], False),
        (['/x/aiida_core-3.0.0a1.dist-info'], False),
        (['/x/aiida_core-2.9.4.dist-info', '/y/aiida_core-2.9.4.dist-info'], False),  # which one is imported?
        ([], False),
    ],
)
def test_the_folder_is_found_here_for_one_aiida_core_of_the_checked_releases(installations, found_here):
    assert compat.finds_folder_as_aiida_core(installations) is found_here


def test_the_daemons_files_are_the_ones_aiida_core_names(daemon_module, monkeypatch):
    pytest.importorskip('aiida')
    assert compat.daemon_files_agree() is True
    found = compat.daemon_files_in

    def elsewhere(resolver, name, uuid, process_control):
        files = found(resolver, name, uuid, process_control)
        files.sockets += '-elsewhere'
        return files

    monkeypatch.setattr(compat, 'daemon_files_in', elsewhere)
    assert compat.daemon_files_agree() is False


@pytest.mark.parametrize(
    ('request_text', 'options', 'workers'),
    [
        ('4\n', {'daemon.default_workers': 3}, 4),  # `verdi daemon start 4`
        (None, {'daemon.default_workers': 3}, 3),
        (None, {}, 1),
        ('0\n', {'daemon.default_workers': 2}, 2),
        ('many', {'daemon.default_workers': 2}, 2),
        (None, {'daemon.default_workers': 0}, 1),
        (None, {'daemon.default_workers': 'many'}, 1),
    ],
    ids=['asked', 'default-workers', 'none', 'asked-for-none', 'asked-for-nonsense', 'zero-default', 'bad-default'],
)
def test_the_workers_asked_for_by_verdi_else_the_profiles_default(daemon_module, tmp_path, request_text, options,
                                                                  workers):
    profile = make_profile(tmp_path, options=options)
    request = tmp_path / 'daemon' / 'aiida-daemon-workers-default'
    request.parent.mkdir()
    if request_text is not None:
        request.write_text(request_text)
    assert daemon_module.requested_workers(profile) == workers
    assert not request.exists()  # it asks once
    assert daemon_module.requested_workers(make_profile(tmp_path, options={})) == 1


def test_the_workers_get_the_environment_aiida_cores_daemon_gives_them(daemon_module, profile, monkeypatch):
    monkeypatch.setenv('AIIDA_TEST_VARIABLE', 'kept')
    env = daemon_module.worker_environment(profile)
    assert env['AIIDA_PATH'] == profile.config_folder
    assert env['PYTHONUNBUFFERED'] == 'True'
    assert env['PYTHONPATH'] == ':'.join(sys.path)
    assert env['PATH'] == f'{os.path.dirname(sys.executable)}:{os.environ["PATH"]}'
    assert env['AIIDA_TEST_VARIABLE'] == 'kept'


class FakeConfig:
    """The parts of aiida-core's Config that set_daemon_timeout uses."""

    def __init__(self, timeout, fails=False):
        self.timeout, self.fails, self.set, self.stored = timeout, fails, [], 0

    def get_profile(self, name):
        assert name == 'default'
        return SimpleNamespace(get_option=lambda key: self.timeout if key == 'daemon.timeout' else None)

    def set_option(self, key, value, scope):
        self.set.append((key, value, scope))

    def store(self):
        self.stored += 1
        if self.fails:
            raise PermissionError('read-only')


def test_a_profile_without_its_own_daemon_timeout_gets_daemon_timeout(daemon_module, capsys):
    config = FakeConfig(timeout=None)
    daemon_module.set_daemon_timeout(config, 'default')
    assert (config.set, config.stored) == ([('daemon.timeout', daemon_module.DAEMON_TIMEOUT, 'default')], 1)
    config = FakeConfig(timeout=12)
    daemon_module.set_daemon_timeout(config, 'default')
    assert (config.set, config.stored) == ([], 0)
    daemon_module.set_daemon_timeout(FakeConfig(timeout=None, fails=True), 'default')
    assert 'could not set daemon.timeout' in capsys.readouterr().err


# --- the PID file and the sockets file ----------------------------------------------------------


def test_claiming_writes_the_sockets_file_and_the_pid_file(daemon):
    daemon.claim_files()
    assert read(daemon.files.sockets) == daemon.socket_directory
    assert read(daemon.files.pid) == f'{os.getpid()}\n'
    assert os.path.isdir(os.path.dirname(daemon.files.workers_log))
    assert not [name for name in os.listdir(os.path.dirname(daemon.files.pid)) if name.endswith('.tmp')]


def test_files_that_name_something_else_are_repaired(daemon):
    daemon.claim_files()
    assert daemon.repair_files() == []
    with open(daemon.files.sockets, 'w', encoding='utf8') as handle:
        handle.write('/tmp/another-folder')
    os.unlink(daemon.files.pid)
    repaired = daemon.repair_files()
    assert len(repaired) == 2 and 'another socket folder' in repaired[0] and 'another process' in repaired[1]
    assert read(daemon.files.sockets) == daemon.socket_directory
    assert read(daemon.files.pid) == f'{os.getpid()}\n'
    assert daemon.repair_files() == []


def test_releasing_removes_only_its_own_pid_file_and_ends_the_repairs(daemon):
    daemon.claim_files()
    daemon.release_files()
    assert not os.path.exists(daemon.files.pid)
    assert daemon.repair_files() == []
    assert not os.path.exists(daemon.files.pid)


def test_releasing_keeps_a_pid_file_of_another_daemon(daemon):
    os.makedirs(os.path.dirname(daemon.files.pid))
    with open(daemon.files.pid, 'w', encoding='utf8') as handle:
        handle.write('1\n')
    daemon.release_files()
    assert read(daemon.files.pid) == '1\n'


def test_removing_a_file_that_is_not_there_or_none_is_no_error(daemon_module, tmp_path):
    daemon_module.remove(str(tmp_path / 'missing'))
    daemon_module.remove(None)
    (tmp_path / 'there').write_text('x')
    daemon_module.remove(str(tmp_path / 'there'))
    assert not (tmp_path / 'there').exists()


# --- circusd, its quit handshake and the service's own ZeroMQ broker -------------------------------


def quit_answer(daemon, message):
    """What answer_quit() replies to circusd, which sends `message` (None: closes its end)."""
    service_end, circusd_end = socket.socketpair()
    with circusd_end:
        if message is None:
            circusd_end.close()
        else:
            circusd_end.sendall(message)
        daemon.answer_quit(service_end)
        if message is None:
            return None
        circusd_end.settimeout(10)
        return circusd_end.recv(16)


def test_a_quit_keeps_the_service_down_and_releases_the_pid_file_before_circusd_answers(
    daemon_module, daemon, monkeypatch, tmp_path
):
    calls = fake_aiida_init(tmp_path, monkeypatch)
    daemon.claim_files()
    assert quit_answer(daemon, b'quit\n') == b'\n'
    assert not os.path.exists(daemon.files.pid)
    assert calls() == [f's6-svc -O {daemon_module.SERVICE_DIRECTORY}']
    assert daemon.quit_requested and daemon.stopping
    assert daemon.repair_files() == []  # the watchdog writes it no more
    assert not os.path.exists(daemon.files.pid)


def test_a_quit_after_the_stop_signal_does_not_keep_the_service_down(daemon, monkeypatch, tmp_path):
    calls = fake_aiida_init(tmp_path, monkeypatch)
    daemon.claim_files()
    daemon.signalled = True
    assert quit_answer(daemon, b'quit\n') == b'\n'
    assert not os.path.exists(daemon.files.pid)
    assert calls() == []


@pytest.mark.parametrize('message', [None, b'what\n'], ids=['closed', 'another-word'])
def test_a_quit_socket_closed_without_a_quit_changes_nothing(daemon, monkeypatch, tmp_path, message):
    calls = fake_aiida_init(tmp_path, monkeypatch)
    daemon.claim_files()
    quit_answer(daemon, message)
    assert read(daemon.files.pid) == f'{os.getpid()}\n'
    assert calls() == []
    assert not daemon.quit_requested and not daemon.stopping


FAKE_CIRCUSD = """\
import json, os, socket, sys

arguments = sys.argv[1:]
with open({record!r}, 'a', encoding='utf8') as handle:
    umask = next(line.split()[1] for line in open('/proc/self/status') if line.startswith('Umask:'))
    call = {{'arguments': arguments, 'AIIDA_PATH': os.environ.get('AIIDA_PATH'), 'umask': umask}}
    handle.write(json.dumps(call) + '\\n')
if arguments[0] != 'circusd':
    sys.exit(0)
notify = int(arguments[arguments.index('--notify-fd') + 1])
os.write(notify, {ready!r})
os.close(notify)
if {ready!r} != b'\\n':
    sys.exit(3)
quit_socket = socket.socket(fileno=int(arguments[arguments.index('--quit-fd') + 1]))
quit_socket.sendall(b'quit')
sys.exit(0 if quit_socket.recv(16) == b'\\n' else 4)
"""
"""An `aiida-init` (Python) that records each call; as `aiida-init circusd`, it reports ready (if
`ready` is a newline, else writes `ready` and ends with 3), then asks the service to quit, as a
client's `verdi daemon stop` makes circusd do, and ends 0 once answered."""


def fake_circusd(tmp_path, monkeypatch, ready=b'\n'):
    record = tmp_path / 'circusd-calls'
    fake = tmp_path / 'bin' / 'aiida-init'
    fake.parent.mkdir()
    fake.write_text(f'#!{sys.executable}\n' + FAKE_CIRCUSD.format(record=str(record), ready=ready))
    fake.chmod(0o755)
    monkeypatch.setenv('PATH', f'{fake.parent}:{os.environ["PATH"]}')
    return lambda: [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def test_circusd_runs_the_workers_and_a_quit_it_passes_on_ends_the_service(
    daemon_module, daemon, monkeypatch, tmp_path
):
    calls = fake_circusd(tmp_path, monkeypatch)
    daemon.claim_files()
    assert daemon.start_circusd(2) is True
    assert daemon.run_until_circusd_ends() == 0
    circusd, s6_svc = calls()
    arguments = circusd['arguments']
    options = dict(zip(arguments[1:arguments.index('--'):2], arguments[2:arguments.index('--'):2], strict=True))
    assert arguments[0] == 'circusd'
    assert options['--name'] == 'aiida-default'
    assert options['--controller'] == os.path.join(daemon.socket_directory, 'circus.c.sock')
    assert options['--log-file'] == daemon.files.workers_log
    assert options['--workers'] == '2'
    assert options['--stop-timeout'] == str(daemon_module.WORKER_STOP_TIMEOUT)
    assert arguments[arguments.index('--') + 1:] == [
        sys.executable, daemon_module.DAEMON_WORKER, '-p', 'default', 'daemon', 'worker'
    ]  # fmt: skip
    assert circusd['AIIDA_PATH'] == daemon.profile.config_folder
    assert s6_svc['arguments'] == ['s6-svc', '-O', daemon_module.SERVICE_DIRECTORY]
    assert not os.path.exists(daemon.files.pid)
    assert not os.path.exists(daemon.socket_directory)  # each start makes its own


def test_circusd_starts_with_the_services_umask_whatever_a_thread_set_meanwhile(
    daemon_module, daemon, monkeypatch, tmp_path
):
    """aiida-core's settings module, which the loader thread imports while circusd may start, sets the
    process's umask to 077 for a moment: circusd and its workers keep the service's own."""
    calls = fake_circusd(tmp_path, monkeypatch)
    assert daemon_module.START_UMASK == daemon_module.process_umask() != -1
    monkeypatch.setattr(daemon_module, 'START_UMASK', 0o022)
    daemon.claim_files()
    before = os.umask(0o077)  # as the settings module's import does, in another thread
    try:
        assert daemon.start_circusd(1) is True
    finally:
        os.umask(before)
    assert daemon.run_until_circusd_ends() == 0
    assert calls()[0]['umask'] == '0022'


def test_a_circusd_that_ends_before_it_is_ready_is_no_daemon(daemon_module, daemon, monkeypatch, tmp_path):
    fake_circusd(tmp_path, monkeypatch, ready=b'')
    daemon.claim_files()
    assert daemon.start_circusd(1) is False
    assert daemon.run_until_circusd_ends() == 1
    assert not os.path.exists(daemon.files.pid)


@pytest.mark.parametrize('code', [0, 3])
def test_a_circusd_that_ends_by_itself_means_a_restart(daemon, children, capsys, code):
    daemon.claim_files()
    daemon.circusd = start(children, ['sh', '-c', f'exit {code}'])
    assert daemon.run_until_circusd_ends() == 1
    assert not os.path.exists(daemon.files.pid)
    assert f'circusd ended by itself (exit status {code})' in capsys.readouterr().err


def test_the_stop_signal_is_passed_to_circusd_and_the_service_ends_with_it(daemon_module, daemon, children):
    daemon.claim_files()
    # circusd ends 0 on SIGTERM once its workers stopped.
    code = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); print('ready', " \
           'flush=True); time.sleep(60)'
    daemon.circusd = start(children, [sys.executable, '-c', code], stdout=subprocess.PIPE)
    assert daemon.circusd.stdout.readline() == b'ready\n'
    daemon.stop_on_signal(signal.SIGTERM, None)
    assert daemon.signalled
    assert daemon.run_until_circusd_ends() == 0
    assert not os.path.exists(daemon.files.pid)
    assert not os.path.exists(daemon.socket_directory)


FAKE_BROKER = """\
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print(' '.join(sys.argv[1:]), flush=True)
time.sleep(60)
"""


def zmq_daemon(daemon_module, tmp_path):
    """A daemon service for a profile on the ZeroMQ broker, its broker folder in `tmp_path`."""
    zeromq = {'backend': 'core.zeromq', 'config': {}}
    return daemon_module.Daemon(make_profile(tmp_path, broker_dir=tmp_path / 'broker', process_control=zeromq))


def test_the_services_own_zmq_broker_logs_to_its_folder_and_is_started_again(daemon_module, tmp_path, monkeypatch):
    broker_program = tmp_path / 'aiida-zmq-broker'
    broker_program.write_text(FAKE_BROKER)
    monkeypatch.setattr(daemon_module, 'ZMQ_BROKER', str(broker_program))
    service = zmq_daemon(daemon_module, tmp_path)
    try:
        service.claim_files()
        service.start_broker()
        first = service.broker
        folder = tmp_path / 'broker'
        expected = f'-p default daemon broker --service-dir {folder} --log-file-path {folder}/broker.log'
        assert wait_until(lambda: (tmp_path / 'broker' / 'broker.log').read_text() == f'{expected}\n')
        assert daemon_module.command_line(first.pid)[:2] == [sys.executable, str(broker_program)]
        # Ended: the watchdog starts it again.
        first.kill()
        first.wait()
        monkeypatch.setattr(service, 'zmq_broker_pid', lambda: None)
        monkeypatch.setattr(service, 'database_started_at', lambda: None)
        service.watch_step(daemon_module.Watch(1000.0, None), lambda: 1000.0)
        assert service.broker is not first and service.broker.poll() is None
        assert wait_until(lambda: (tmp_path / 'broker' / 'broker.log').read_text() == f'{expected}\n' * 2)
        service.stop_broker()
        assert service.broker.returncode == 0
        service.stop_broker()  # ended: nothing to do
    finally:
        if service.broker is not None and service.broker.poll() is None:
            service.broker.kill()
            service.broker.wait()
        shutil.rmtree(service.socket_directory, ignore_errors=True)


# --- readiness: the ZeroMQ broker's status file -------------------------------------------------


@pytest.mark.parametrize(
    ('status', 'up'),
    [
        (lambda before, after, pid: {'running': True, 'pid': pid, 'timestamp': after}, True),
        # Written before the process started: left by a broker (of a killed container, say) whose
        # PID another process has now.
        (lambda before, after, pid: {'running': True, 'pid': pid, 'timestamp': before}, False),
        (lambda before, after, pid: {'running': True, 'pid': pid, 'timestamp': after - 3600 * 24 * 365}, False),
        (lambda before, after, pid: {'running': True, 'pid': 2**22 + 1, 'timestamp': after}, False),  # no process
        (lambda before, after, pid: {'running': True, 'timestamp': after}, False),
        (lambda before, after, pid: {'running': True, 'pid': pid}, False),
        (lambda before, after, pid: ['not', 'a', 'status'], False),
    ],
)
def test_the_zmq_broker_is_up_once_a_running_broker_wrote_its_status(daemon_module, tmp_path, children, status, up):
    service = zmq_daemon(daemon_module, tmp_path)
    try:
        status_file = tmp_path / 'broker' / 'broker.status'
        assert service.files.broker_status == str(status_file)
        assert service.zmq_broker_pid() is None  # no file yet
        status_file.parent.mkdir()
        before = time.time() - 5  # /proc's start time counts from a boot time in whole seconds
        broker = running(daemon_module, start(children, ['sleep', '60']))
        after = time.time()
        status_file.write_text(json.dumps(status(before, after, broker.pid)))
        assert service.zmq_broker_pid() == (broker.pid if up else None)
        status_file.write_text('{"pid": ')  # caught while the broker rewrites it
        assert service.zmq_broker_pid() is None
        if up:
            status_file.write_text(json.dumps(status(before, after, broker.pid)))
            broker.kill()
            broker.wait()
            assert service.zmq_broker_pid() is None  # it names a process that ended
    finally:
        shutil.rmtree(service.socket_directory, ignore_errors=True)


def test_without_the_zmq_broker_there_is_no_broker_to_wait_for(daemon):
    assert daemon.files.broker_status is None
    assert daemon.zmq_broker_pid() is None
    assert daemon.wait_for_zmq_broker() is True  # without circusd to look at


def test_waiting_for_the_zmq_broker_ends_when_circusd_ends_or_the_broker_is_up(daemon_module, tmp_path, children):
    service = zmq_daemon(daemon_module, tmp_path)
    try:
        service.circusd = start(children, ['sh', '-c', 'exit 1'])
        assert service.wait_for_zmq_broker() is False
        service.circusd = start(children, ['sleep', '60'])
        broker = running(daemon_module, start(children, ['sleep', '60']))
        (tmp_path / 'broker').mkdir()

        def write_status():
            time.sleep(0.2)
            status = {'running': True, 'pid': broker.pid, 'timestamp': time.time()}
            (tmp_path / 'broker' / 'broker.status').write_text(json.dumps(status))

        writer = threading.Thread(target=write_status)
        writer.start()
        assert service.wait_for_zmq_broker() is True
        writer.join()
    finally:
        shutil.rmtree(service.socket_directory, ignore_errors=True)


# --- the watchdog ---------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class GaveUp(Exception):
    """give_up() ends the process; the fake raises this instead."""


def watched(daemon_module, daemon, monkeypatch, answers=(), database=(), brokers=()):
    """The daemon with scripted status answers, PostgreSQL start times and ZeroMQ broker PIDs;
    returns (watch, clock, record) where record counts the calls made."""
    record = {'status': 0, 'restarts': [], 'gave_up': 0}
    answers, database, brokers = list(answers), list(database), list(brokers)

    def status_answered(timeout):
        assert timeout == daemon_module.STATUS_CALL_TIMEOUT
        record['status'] += 1
        return answers.pop(0)

    def give_up():
        record['gave_up'] += 1
        raise GaveUp

    monkeypatch.setattr(daemon, 'status_answered', status_answered)
    monkeypatch.setattr(daemon, 'give_up', give_up)
    monkeypatch.setattr(daemon, 'database_started_at', lambda: database.pop(0) if database else None)
    monkeypatch.setattr(daemon, 'zmq_broker_pid', lambda: brokers.pop(0) if brokers else None)
    monkeypatch.setattr(daemon, 'restart_workers', lambda why: record['restarts'].append(why))
    daemon.claim_files()
    clock = Clock()
    return daemon_module.Watch(clock(), daemon.database_started_at(), daemon.zmq_broker_pid()), clock, record


def test_the_watchdog_gives_up_after_watchdog_failures_unanswered_status_calls(daemon_module, daemon, monkeypatch):
    failures = daemon_module.WATCHDOG_FAILURES
    watch, clock, record = watched(daemon_module, daemon, monkeypatch, answers=[False] * failures)
    for call in range(1, failures):
        clock.now += daemon_module.STATUS_CHECK_INTERVAL
        daemon.watch_step(watch, clock)
        assert (record['status'], watch.failures, record['gave_up']) == (call, call, 0)
    clock.now += daemon_module.STATUS_CHECK_INTERVAL
    with pytest.raises(GaveUp):
        daemon.watch_step(watch, clock)
    assert (record['status'], record['gave_up']) == (failures, 1)


def test_an_answered_status_call_resets_the_count_of_failures(daemon_module, daemon, monkeypatch):
    failures = daemon_module.WATCHDOG_FAILURES
    answers = [False] * (failures - 1) + [True] + [False] * (failures - 1)
    watch, clock, record = watched(daemon_module, daemon, monkeypatch, answers=answers)
    for _ in answers:
        clock.now += daemon_module.STATUS_CHECK_INTERVAL
        daemon.watch_step(watch, clock)
    assert (record['status'], record['gave_up'], watch.failures) == (len(answers), 0, failures - 1)


def test_status_calls_are_made_every_status_check_interval_only(daemon_module, daemon, monkeypatch):
    watch, clock, record = watched(daemon_module, daemon, monkeypatch, answers=[True] * 10)
    steps = int(3 * daemon_module.STATUS_CHECK_INTERVAL / daemon_module.FILE_CHECK_INTERVAL)
    for _ in range(steps):
        clock.now += daemon_module.FILE_CHECK_INTERVAL
        daemon.watch_step(watch, clock)
    assert record['status'] == 3


def test_a_watch_step_repairs_the_files(daemon_module, daemon, monkeypatch, capsys):
    watch, clock, _ = watched(daemon_module, daemon, monkeypatch, answers=[True] * 10)
    os.unlink(daemon.files.pid)
    clock.now += daemon_module.FILE_CHECK_INTERVAL
    daemon.watch_step(watch, clock)
    assert read(daemon.files.pid) == f'{os.getpid()}\n'
    assert f'rewritten: {daemon.files.pid} named another process' in capsys.readouterr().err


def test_a_changed_postgresql_start_time_restarts_the_workers_once(daemon_module, daemon, monkeypatch):
    # Start-up, then one check per DATABASE_CHECK_INTERVAL: unchanged, restarted, down (no answer),
    # up again with the same start time, unchanged.
    database = ['t0', 't0', 't1', None, 't1', 't1']
    watch, clock, record = watched(daemon_module, daemon, monkeypatch, answers=[True] * 10, database=database)
    for _ in database[1:]:
        clock.now += daemon_module.DATABASE_CHECK_INTERVAL
        daemon.watch_step(watch, clock)
    assert record['restarts'] == ['PostgreSQL restarted']
    assert watch.database_started == 't1'


def test_a_restarted_zmq_broker_restarts_the_workers_once(daemon_module, daemon, monkeypatch):
    # Start-up, then one check per FILE_CHECK_INTERVAL: unchanged, the broker gone (its file names
    # a dead process), a new broker, unchanged.
    brokers = [40, 40, None, 77, 77]
    watch, clock, record = watched(daemon_module, daemon, monkeypatch, answers=[True] * 10, brokers=brokers)
    for _ in brokers[1:]:
        clock.now += daemon_module.FILE_CHECK_INTERVAL
        daemon.watch_step(watch, clock)
    assert record['restarts'] == ['the ZeroMQ broker restarted']
    assert watch.broker_pid == 77


def test_no_restart_without_a_start_time_at_the_watchdogs_start(daemon_module, daemon, monkeypatch):
    watch, clock, record = watched(daemon_module, daemon, monkeypatch, answers=[True] * 10, database=[None, 't0', 't0'])
    for _ in range(2):
        clock.now += daemon_module.DATABASE_CHECK_INTERVAL
        daemon.watch_step(watch, clock)
    assert record['restarts'] == []


def test_watch_steps_after_each_file_check_interval(daemon_module, daemon, monkeypatch):
    slept, steps = [], []

    def sleep(seconds):
        if len(slept) == 3:
            raise GaveUp
        slept.append(seconds)

    monkeypatch.setattr(daemon, 'database_started_at', lambda: None)
    monkeypatch.setattr(daemon, 'watch_step', lambda watch, clock: steps.append(watch))
    with pytest.raises(GaveUp):
        daemon.watch(clock=Clock(), sleep=sleep)
    assert slept == [daemon_module.FILE_CHECK_INTERVAL] * 3
    assert len(steps) == 3


@pytest.mark.parametrize(
    ('broker_now', 'database_after', 'restarts'),
    [
        (4242, False, []),
        (4343, False, ['the ZeroMQ broker restarted']),
        (None, False, []),
        (4242, True, ['PostgreSQL restarted']),
    ],
)
def test_a_restart_between_readiness_and_the_watchdogs_start_restarts_the_workers(
    daemon_module, daemon, monkeypatch, broker_now, database_after, restarts
):
    """The watchdog begins once aiida-core is loaded, after readiness: from the ZeroMQ broker the
    workers met then (another one since is a restart, seen at the first step; none running yet
    is no restart), and a PostgreSQL that started since readiness restarts them at once."""
    import datetime

    daemon.ready_at = 1_000_000.0
    daemon.broker_pid_at_ready = 4242
    database_started = datetime.datetime.fromtimestamp(daemon.ready_at + (1 if database_after else -1), tz=datetime.UTC)
    made, steps = [], []
    monkeypatch.setattr(daemon, 'database_started_at', lambda: database_started)
    monkeypatch.setattr(daemon, 'zmq_broker_pid', lambda: broker_now)
    monkeypatch.setattr(daemon, 'repair_files', lambda: [])
    monkeypatch.setattr(daemon, 'restart_workers', made.append)

    def sleep(seconds):
        if steps:
            raise GaveUp
        steps.append(seconds)

    with pytest.raises(GaveUp):
        daemon.watch(clock=Clock(), sleep=sleep)
    assert made == restarts


@pytest.mark.parametrize(('after_ready', 'restarts'), [(True, ['PostgreSQL restarted']), (False, [])])
def test_postgresql_down_as_the_watchdog_began_then_up_restarts_the_workers_if_it_started_since_readiness(
    daemon_module, daemon, monkeypatch, after_ready, restarts
):
    import datetime

    daemon.ready_at = 1_000_000.0
    started = datetime.datetime.fromtimestamp(daemon.ready_at + (1 if after_ready else -1), tz=datetime.UTC)
    watch, clock, record = watched(daemon_module, daemon, monkeypatch, database=[None, started])
    assert watch.database_started is None
    clock.now += daemon_module.DATABASE_CHECK_INTERVAL
    daemon.watch_step(watch, clock)
    assert record['restarts'] == restarts


def test_the_watchdog_watches_once_aiida_core_is_loaded_and_not_without_it(daemon, monkeypatch, capsys):
    loader = threading.Thread(target=lambda: None)
    watched_after = []
    monkeypatch.setattr(daemon, 'watch', lambda: watched_after.append('watch'))
    monkeypatch.setattr(daemon, 'load_aiida_core', lambda thread: watched_after.append(thread))
    daemon.watch_after_ready(loader)
    assert watched_after == [loader, 'watch']

    def broken(thread):
        raise ImportError('no aiida')

    watched_after.clear()
    monkeypatch.setattr(daemon, 'load_aiida_core', broken)
    daemon.watch_after_ready(loader)
    assert watched_after == []
    assert "aiida-core could not be loaded for the watchdog: ImportError('no aiida')" in capsys.readouterr().err


def test_no_postgresql_start_time_without_postgresql(daemon_module, tmp_path):
    sqlite = make_profile(tmp_path, storage={'backend': 'core.sqlite_dos', 'config': {}})
    service = daemon_module.Daemon(sqlite)
    try:
        assert service.database_started_at() is None
    finally:
        shutil.rmtree(service.socket_directory, ignore_errors=True)


def test_no_postgresql_start_time_without_an_answer(daemon_module, tmp_path):
    pytest.importorskip('psycopg')
    config = {'database_hostname': '127.0.0.1', 'database_port': 1, 'database_username': 'u',
              'database_password': 'p', 'database_name': 'd'}
    service = daemon_module.Daemon(make_profile(tmp_path, storage={'backend': 'core.psql_dos', 'config': config}))
    try:
        assert service.database_started_at() is None
    finally:
        shutil.rmtree(service.socket_directory, ignore_errors=True)


class FakeDaemonClient:
    """aiida-core's DaemonClient as restart_workers and status_answered use it."""

    calls: list = []
    status = None

    def __init__(self, profile):
        self.calls.append(('client', profile))

    daemon_name = 'aiida-default'

    def call_client(self, command, timeout):
        self.calls.append((command['command'], command['properties'], timeout))

    def get_status(self, timeout):
        self.calls.append(('status', timeout))
        if isinstance(self.status, Exception):
            raise self.status
        return self.status


@pytest.fixture
def daemon_client(daemon, monkeypatch):
    pytest.importorskip('aiida')
    from aiida.engine.daemon import client as client_module

    monkeypatch.setattr(FakeDaemonClient, 'calls', [])
    monkeypatch.setattr(client_module, 'DaemonClient', FakeDaemonClient)
    daemon.aiida_profile = SimpleNamespace(name='default')  # what load_profile() returns
    return FakeDaemonClient


def test_restarting_the_workers_stops_them_repairs_then_starts_them(daemon_module, daemon, daemon_client, monkeypatch):
    monkeypatch.setattr(daemon, 'send_lost_tasks_again', lambda: daemon_client.calls.append('repair'))
    daemon.restart_workers('PostgreSQL restarted')
    workers = {'name': 'aiida-default', 'waiting': True}
    timeout = daemon_module.STATUS_CALL_TIMEOUT
    assert daemon_client.calls == [
        ('client', daemon.aiida_profile), ('stop', workers, timeout), 'repair', ('start', workers, timeout)
    ]  # fmt: skip


def test_the_workers_are_started_again_when_the_repair_fails(daemon, daemon_client, monkeypatch, capsys):
    def repair():
        raise RuntimeError('broker gone')

    monkeypatch.setattr(daemon, 'send_lost_tasks_again', repair)
    daemon.restart_workers('PostgreSQL restarted')
    assert [call[0] for call in daemon_client.calls] == ['client', 'stop', 'start']
    assert 'restarting the workers failed: broker gone' in capsys.readouterr().err


@pytest.mark.parametrize(('status', 'answered'), [({'status': 'ok'}, True), (TimeoutError('no answer'), False)])
def test_a_status_call_is_answered_as_any_clients(daemon, daemon_client, monkeypatch, status, answered):
    monkeypatch.setattr(daemon_client, 'status', status)
    assert daemon.status_answered(timeout=7) is answered
    assert daemon_client.calls == [('client', daemon.aiida_profile), ('status', 7)]


def test_giving_up_kills_circusd_and_its_workers_and_exits_1(daemon_module, daemon, children, monkeypatch):
    daemon.claim_files()
    daemon.circusd = running(daemon_module, start(children, ['sh', '-c', 'sleep 60 & wait']))
    worker = child_of(daemon_module, daemon.circusd.pid, ['sleep', '60'])
    exits = []

    def exit_(code):
        exits.append(code)
        raise GaveUp

    monkeypatch.setattr(daemon_module.os, '_exit', exit_)
    with pytest.raises(GaveUp):
        daemon.give_up()
    assert exits == [1]
    assert daemon.circusd.wait(timeout=10) == -signal.SIGKILL
    assert wait_until(lambda: ended(worker))
    assert not os.path.exists(daemon.files.pid)


# --- the lost-task repair -----------------------------------------------------------------------


class FakeManager:
    def __init__(self):
        self.sent = []
        self.reset = []
        self.broker = object()

    def get_broker(self):
        return self.broker

    def get_process_controller(self):
        manager = self

        class Controller:
            def continue_process(self, pk, nowait, no_reply):
                manager.sent.append((pk, nowait, no_reply))

        return Controller()

    def reset_profile_storage(self):
        self.reset.append('storage')

    def reset_broker(self):
        self.reset.append('broker')


@pytest.fixture
def aiida_manager(monkeypatch):
    pytest.importorskip('aiida')
    compat.load_bare_packages()  # as send_lost_tasks_again() does first: it must not undo the fakes
    import aiida.manage
    from aiida.engine.processes import control

    manager = FakeManager()
    monkeypatch.setattr(aiida.manage, 'get_manager', lambda: manager)
    monkeypatch.setattr(control, 'get_active_processes', lambda project: [5, 1, 3, 4, 2])

    def get_process_tasks(broker):
        assert broker is manager.broker
        return [2, 4, 9]

    monkeypatch.setattr(control, 'get_process_tasks', get_process_tasks)
    return manager


def test_continue_process_is_sent_for_exactly_the_processes_without_a_task(daemon, aiida_manager):
    daemon.send_lost_tasks_again()
    assert aiida_manager.sent == [(1, True, True), (3, True, True), (5, True, True)]
    assert aiida_manager.reset == ['storage', 'broker']


def test_nothing_is_sent_when_every_process_has_a_task(daemon, aiida_manager, monkeypatch):
    from aiida.engine.processes import control

    monkeypatch.setattr(control, 'get_active_processes', lambda project: [2, 4])
    daemon.send_lost_tasks_again()
    assert aiida_manager.sent == []
    assert aiida_manager.reset == ['storage', 'broker']


def test_a_failing_repair_still_lets_go_of_the_storage_and_the_broker(daemon, aiida_manager, monkeypatch):
    from aiida.engine.processes import control

    def broken(project):
        raise RuntimeError('database gone')

    monkeypatch.setattr(control, 'get_active_processes', broken)
    daemon.send_lost_tasks_again()
    assert aiida_manager.sent == []
    assert aiida_manager.reset == ['storage', 'broker']


def test_no_repair_without_rabbitmq(daemon, aiida_manager):
    daemon.profile.process_control = {'backend': 'core.zeromq', 'config': {}}
    daemon.send_lost_tasks_again()
    assert aiida_manager.sent == [] and aiida_manager.reset == []


# --- the compatibility module -------------------------------------------------------------------


def test_the_installed_aiida_core_has_every_internal_the_service_uses(daemon_module):
    pytest.importorskip('aiida')
    assert compat.missing_internals() == []
    assert compat.main(['--check']) == 0


def test_the_check_names_a_missing_internal(daemon_module, monkeypatch, capsys):
    pytest.importorskip('aiida')
    from aiida.engine.daemon.client import DaemonClient

    monkeypatch.delattr(DaemonClient, 'get_daemon_pid')
    assert compat.missing_internals() == ['aiida-core: DaemonClient.get_daemon_pid']
    assert compat.main(['--check']) == 1
    assert 'missing internal: aiida-core: DaemonClient.get_daemon_pid' in capsys.readouterr().err


def test_the_version_file_is_written_where_aiida_core_has_one(daemon_module):
    written = []
    compat.write_version_file(SimpleNamespace(_write_version_file=lambda: written.append(True)))
    assert written == [True]
    compat.write_version_file(object())  # before aiida-core 2.9 there is no version file to write


def lines_printed_by_a_new_python(code: str, **env: str) -> list[str]:
    """What `code` prints, run by a new Python process with the compatibility module importable
    (and `env` added to its environment): what it imports is not already imported by the tests."""
    return subprocess.run(
        [sys.executable, '-c', code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, 'PYTHONPATH': os.path.dirname(compat.__file__), **env},
    ).stdout.splitlines()


def test_the_daemon_client_module_is_imported_without_the_whole_engine(daemon_module):
    pytest.importorskip('aiida')
    code = (
        'import sys, aiida_daemon_compat as c\n'
        'c.import_daemon_client()\n'
        "print('aiida.engine.processes' in sys.modules, c.bare_packages)\n"
        'c.load_bare_packages()\n'
        "import aiida.engine\nprint('aiida.engine.processes' in sys.modules, hasattr(aiida.engine, 'submit'))\n"
    )
    assert lines_printed_by_a_new_python(code) == ["False ['aiida.engine', 'aiida.engine.daemon']", 'True True']


def test_the_configuration_is_read_without_verdis_parameters_and_groups(daemon_module, tmp_path):
    pytest.importorskip('aiida')
    # A configuration file whose profile the daemon reads, then the packages' __init__ run later.
    code = (
        'import sys, aiida_daemon_compat as c\n'
        'c.import_configuration_reader()\n'
        'from aiida.manage.configuration import get_config\n'
        'config = get_config(create=True)\n'
        "print('aiida.cmdline.params' in sys.modules, 'aiida.cmdline.groups' in sys.modules, c.bare_packages)\n"
        'c.load_bare_packages()\n'
        'import aiida.cmdline, aiida.cmdline.utils\n'
        "print(hasattr(aiida.cmdline, 'DynamicEntryPointCommandGroup'), hasattr(aiida.cmdline.utils, 'echo_warning'))\n"
    )
    lines = lines_printed_by_a_new_python(code, AIIDA_PATH=str(tmp_path))
    assert lines == ["False False ['aiida.cmdline', 'aiida.cmdline.utils']", 'True True']
    assert (tmp_path / '.aiida' / 'config.json').is_file()


def test_packages_already_imported_whole_are_left_whole(daemon_module):
    pytest.importorskip('aiida')
    code = (
        'import sys, aiida.cmdline, aiida_daemon_compat as c\n'
        'c.import_configuration_reader()\n'
        "print(c.bare_packages, hasattr(sys.modules['aiida.cmdline'], 'DynamicEntryPointCommandGroup'))\n"
    )
    assert lines_printed_by_a_new_python(code) == ['[] True']


# --- the ZeroMQ broker service's profile, without the configuration's model ------------------------


def test_the_zmq_broker_service_finds_its_profile_without_the_configuration_model(daemon_module, tmp_path):
    pytest.importorskip('aiida')
    folder = tmp_path / '.aiida'
    folder.mkdir()
    zeromq = {'backend': 'core.zeromq', 'config': {}}
    profiles = {
        'default': {'PROFILE_UUID': 'u1', 'process_control': zeromq},
        'named': {'PROFILE_UUID': 'u2', 'process_control': {'backend': 'core.zeromq'}},
        'rabbitmq': {'PROFILE_UUID': 'u3', 'process_control': {'backend': 'core.rabbitmq', 'config': {}}},
        'unsupervised': {
            'PROFILE_UUID': 'u4',
            'process_control': {'backend': 'core.zeromq', 'config': {'supervised_by_daemon': False}},
        },
        'no-uuid': {'process_control': zeromq},
    }
    (folder / 'config.json').write_text(json.dumps({'default_profile': 'default', 'profiles': profiles}))
    code = (
        'import sys, aiida_daemon_compat as c\n'
        'for name in (None, "named", "rabbitmq", "unsupervised", "no-uuid", "missing"):\n'
        '    print(c.zmq_broker_of_the_profile(name))\n'
        "print('pydantic' in sys.modules)\n"
    )
    lines = lines_printed_by_a_new_python(code, AIIDA_PATH=str(tmp_path))
    if has_zmq_broker():
        broker = folder / 'broker'
        assert lines == [
            str(('default', f'{broker}/u1-default', f'{broker}/u1-default/broker.log')),
            str(('named', f'{broker}/u2-named', f'{broker}/u2-named/broker.log')),
            'None',
            'None',
            'None',
            'None',
            'False',
        ]
    else:
        assert lines[:6] == ['None'] * 6


def test_no_readable_configuration_means_no_zmq_broker(daemon_module, tmp_path):
    pytest.importorskip('aiida')
    (tmp_path / '.aiida').mkdir()
    code = 'import aiida_daemon_compat as c\nprint(c.zmq_broker_of_the_profile(None))\n'
    assert lines_printed_by_a_new_python(code, AIIDA_PATH=str(tmp_path)) == ['None']
    (tmp_path / '.aiida' / 'config.json').write_text('{"profiles": ')
    assert lines_printed_by_a_new_python(code, AIIDA_PATH=str(tmp_path)) == ['None']


def test_the_zmq_broker_folder_is_the_one_aiida_core_names(daemon_module, monkeypatch):
    pytest.importorskip('aiida')
    assert compat.zmq_broker_folders_agree() is has_zmq_broker()
    found = compat.zmq_broker_in

    def elsewhere(config, resolver, name):
        name, folder, log = found(config, resolver, name)
        return name, folder + '-elsewhere', log

    monkeypatch.setattr(compat, 'zmq_broker_in', elsewhere)
    assert compat.zmq_broker_folders_agree() is False


def test_what_the_broker_logs_before_its_logging_is_set_up_is_handed_on_or_dropped(daemon_module, monkeypatch):
    import logging

    from conftest import load_script

    broker = load_script('aiida_zmq_broker', 'aiida-zmq-broker')
    aiida = logging.getLogger('aiida')
    monkeypatch.setattr(aiida, 'level', logging.WARNING)
    monkeypatch.setattr(aiida, 'handlers', [])
    start_log = broker.StartLog()
    logging.getLogger('aiida.brokers.test').debug('debug before')
    logging.getLogger('aiida.brokers.test').info('info before')
    assert [r.getMessage() for r in start_log.records] == ['debug before', 'info before']
    # The profile's logging, set up: INFO and above to a handler of its own.
    kept = []
    handler = logging.Handler(logging.NOTSET)
    handler.emit = lambda record: kept.append(record.getMessage())
    aiida.handlers = [handler]
    aiida.setLevel(logging.INFO)
    start_log.replay()
    assert kept == ['info before'] and start_log.records == [] and start_log not in aiida.handlers
    # No logging could be set up: nothing more is kept, and the level is the one found.
    aiida.setLevel(logging.WARNING)
    start_log = broker.StartLog()
    assert aiida.level == logging.DEBUG
    logging.getLogger('aiida.brokers.test').info('dropped')
    start_log.abandon()
    assert aiida.level == logging.WARNING and start_log.records == [] and start_log not in aiida.handlers
