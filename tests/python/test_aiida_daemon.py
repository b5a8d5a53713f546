"""Unit tests of the daemon service (/etc/init/aiida-daemon) and its compatibility module.

They run inside the built image (tests/it/daemon_python.rs), against the image's aiida-core and
the oldest aiida-core the images claim to support. Nothing here starts circus or a worker: the
service's decisions are driven with fake clients, clocks and aiida-core functions.
"""

import os
import shutil
import threading
from types import SimpleNamespace

import pytest


class FakeClient:
    """The parts of aiida-core's DaemonClient that the service's file handling uses."""

    def __init__(self, folder, name='default'):
        self.profile = SimpleNamespace(name=name)
        self.circus_pid_file = str(folder / f'circus-{name}.pid')
        self.circus_socket_file = str(folder / f'circus-{name}.sockets')
        self.daemon_name = f'aiida-{name}'


@pytest.fixture
def daemon(daemon_module, tmp_path):
    profile = SimpleNamespace(
        name='default',
        process_control_backend='core.rabbitmq',
        process_control_config={},
        storage_backend='core.psql_dos',
    )
    service = daemon_module.Daemon(profile, FakeClient(tmp_path))
    yield service
    shutil.rmtree(service.socket_directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def circus_unpatched(monkeypatch):
    """What configure_circus() patches in circus is put back after each test."""
    try:
        import circus
        from circus import watcher
    except ImportError:
        return
    monkeypatch.setattr(circus, 'get_arbiter', circus.get_arbiter)
    monkeypatch.setattr(watcher, 'tornado_sleep', watcher.tornado_sleep)
    monkeypatch.setattr(watcher.Watcher, 'kill_process', watcher.Watcher.kill_process)
    from circus.sighandler import SysHandler

    monkeypatch.setattr(SysHandler, 'signal', SysHandler.signal)


def read(path):
    with open(path, encoding='utf8') as handle:
        return handle.read()


# --- the CPU priority of the start-up imports -----------------------------------------------------


class ImportsBegan(Exception):
    """Raised by the first import step of the fake, once the thread's priority is recorded."""


def priority_of_the_import_thread(daemon_module, monkeypatch, tmp_path, gives_way_to, aiida_init_exit):
    """(scheduling policy, nice value) of the thread that runs load_aiida_at_low_priority() as
    its imports begin, and the arguments of every `aiida-init` call it made (a fake first on PATH
    that exits with `aiida_init_exit`)."""
    fake = tmp_path / 'aiida-init'
    fake.write_text(f'#!/bin/sh\necho "$*" >>"{tmp_path}/calls"\nexit {aiida_init_exit}\n')
    fake.chmod(0o755)
    monkeypatch.setenv('PATH', f'{tmp_path}:{os.environ["PATH"]}')
    monkeypatch.setattr(daemon_module, 'GIVES_WAY_TO', gives_way_to)
    seen = []

    def first_import_step():
        seen.append((os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        raise ImportsBegan

    monkeypatch.setattr(daemon_module.compat, 'defer_ssh_tunnels', first_import_step)

    def load():
        with pytest.raises(ImportsBegan):
            daemon_module.load_aiida_at_low_priority()

    thread = threading.Thread(target=load)
    thread.start()
    thread.join()
    calls = tmp_path / 'calls'
    return seen[0], calls.read_text().splitlines() if calls.exists() else []


def test_the_imports_run_at_the_idle_policy_while_a_service_they_give_way_to_boots(
    daemon_module, monkeypatch, tmp_path
):
    (policy, niceness), calls = priority_of_the_import_thread(daemon_module, monkeypatch, tmp_path, ('rabbitmq',), 2)
    assert policy == os.SCHED_IDLE
    assert niceness == os.getpriority(os.PRIO_PROCESS, threading.get_native_id())  # left as it was
    assert calls == ['wait --timeout 0 rabbitmq']
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the thread's only


@pytest.mark.parametrize(('gives_way_to', 'calls'), [(('rabbitmq',), ['wait --timeout 0 rabbitmq']), ((), [])])
def test_the_imports_run_at_import_niceness_once_those_services_are_ready_or_without_any(
    daemon_module, monkeypatch, tmp_path, gives_way_to, calls
):
    (policy, niceness), made = priority_of_the_import_thread(daemon_module, monkeypatch, tmp_path, gives_way_to, 0)
    assert (policy, niceness) == (os.SCHED_OTHER, daemon_module.IMPORT_NICENESS)
    assert made == calls


def test_without_aiida_init_to_ask_no_service_counts_as_booting(daemon_module, monkeypatch):
    monkeypatch.setenv('PATH', '/nonexistent')
    assert daemon_module.services_ready(('rabbitmq',))


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


def test_restarting_the_workers_stops_them_repairs_then_starts_them(daemon_module, daemon, monkeypatch):
    pytest.importorskip('aiida')
    from aiida.engine.daemon import client as client_module

    calls = []

    class Client:
        daemon_name = 'aiida-default'

        def __init__(self, profile):
            assert profile is daemon.profile

        def call_client(self, command, timeout):
            calls.append((command['command'], command['properties']['name']))

    monkeypatch.setattr(client_module, 'DaemonClient', Client)
    monkeypatch.setattr(daemon, 'send_lost_tasks_again', lambda: calls.append('repair'))
    daemon.restart_workers('PostgreSQL restarted')
    assert calls == [('stop', 'aiida-default'), 'repair', ('start', 'aiida-default')]


def test_more_workers_are_asked_for_again_while_circus_is_still_starting(daemon_module, daemon, monkeypatch, capsys):
    """Circus answers status calls once its socket is bound, but refuses `incr` while its arbiter
    starts the first worker; the service asks again until the answer is ok."""
    conflict = {'status': 'error', 'reason': 'arbiter is already running arbiter_start command'}
    answers = [conflict, conflict, {'status': 'ok', 'numprocesses': 3}]
    calls = []

    def call_client(command, timeout):
        calls.append(command)
        return answers.pop(0)

    daemon.client.call_client = call_client
    monkeypatch.setattr(daemon_module.time, 'sleep', lambda seconds: None)
    daemon.add_workers(2)
    assert calls == [{'command': 'incr', 'properties': {'name': 'aiida-default', 'nb': 2, 'waiting': True}}] * 3
    assert 'could not start' not in capsys.readouterr().err


def test_more_workers_that_circus_keeps_refusing_are_reported(daemon_module, daemon, monkeypatch, capsys):
    clock = Clock()
    daemon.client.call_client = lambda command, timeout: {'status': 'error', 'reason': 'arbiter is restarting...'}

    def sleep(seconds):
        clock.now += seconds

    monkeypatch.setattr(daemon_module.time, 'monotonic', clock)
    monkeypatch.setattr(daemon_module.time, 'sleep', sleep)
    daemon.add_workers(1)
    assert 'could not start 1 more workers: arbiter is restarting...' in capsys.readouterr().err
    assert clock.now >= 1000.0 + daemon_module.STATUS_CALL_TIMEOUT


# --- the PID file and the sockets file ----------------------------------------------------------


class Watching(Exception):
    """The fake watch() raises this: the start is over."""


def test_the_version_file_is_written_once_the_daemon_is_ready(daemon_module, daemon, monkeypatch):
    events = []
    monkeypatch.setattr(daemon, 'controller_socket', lambda: None)
    monkeypatch.setattr(daemon, 'status_answered', lambda timeout: events.append('status answered') or True)
    monkeypatch.setattr(daemon_module, 'notify_ready', lambda: events.append('ready'))
    monkeypatch.setattr(daemon_module.compat, 'write_version_file', lambda client: events.append('version file'))

    def watch():
        raise Watching

    monkeypatch.setattr(daemon, 'watch', watch)
    with pytest.raises(Watching):
        daemon.await_ready_then_watch()
    assert events == ['status answered', 'ready', 'version file']


def test_claiming_writes_the_sockets_file_and_the_pid_file(daemon):
    daemon.claim_files()
    assert read(daemon.client.circus_socket_file) == daemon.socket_directory
    assert read(daemon.client.circus_pid_file) == f'{os.getpid()}\n'
    assert not [name for name in os.listdir(os.path.dirname(daemon.client.circus_pid_file)) if name.endswith('.tmp')]


def test_files_that_name_something_else_are_repaired(daemon):
    daemon.claim_files()
    assert daemon.repair_files() == []
    with open(daemon.client.circus_socket_file, 'w', encoding='utf8') as handle:
        handle.write('/tmp/another-folder')
    os.unlink(daemon.client.circus_pid_file)
    repaired = daemon.repair_files()
    assert len(repaired) == 2 and 'another socket folder' in repaired[0] and 'another process' in repaired[1]
    assert read(daemon.client.circus_socket_file) == daemon.socket_directory
    assert read(daemon.client.circus_pid_file) == f'{os.getpid()}\n'
    assert daemon.repair_files() == []


def test_releasing_removes_only_its_own_pid_file_and_ends_the_repairs(daemon):
    daemon.claim_files()
    daemon.release_files()
    assert not os.path.exists(daemon.client.circus_pid_file)
    assert daemon.repair_files() == []
    assert not os.path.exists(daemon.client.circus_pid_file)


def test_releasing_keeps_a_pid_file_of_another_daemon(daemon):
    with open(daemon.client.circus_pid_file, 'w', encoding='utf8') as handle:
        handle.write('1\n')
    daemon.release_files()
    assert read(daemon.client.circus_pid_file) == '1\n'


def test_circus_removing_the_pid_file_keeps_the_service_down_and_ends_the_repairs(daemon_module, daemon, monkeypatch):
    pidfile_module = pytest.importorskip('circus.pidfile')
    monkeypatch.setattr(pidfile_module.Pidfile, 'unlink', pidfile_module.Pidfile.unlink)  # restored after the test
    kept_down = []

    def keep_down_when_stopped():
        # Asked once the file is gone: `verdi daemon restart` checks the file as soon as circus
        # answers its `quit`, and must not find it naming a process that is exiting. The request
        # still reaches aiida-init before this process exits, which `aiida-init restart` (the
        # start that follows) waits for before it asks for the service again.
        kept_down.append(os.path.exists(daemon.client.circus_pid_file))

    monkeypatch.setattr(daemon_module, 'keep_down_when_stopped', keep_down_when_stopped)
    daemon.release_files_when_circus_stops()
    daemon.claim_files()
    # Circus, as aiida-core starts it, keeps a PID file that names its own process.
    pidfile = pidfile_module.Pidfile(daemon.client.circus_pid_file)
    pidfile.create(os.getpid())
    assert read(daemon.client.circus_pid_file).strip() == str(os.getpid())
    pidfile.unlink()
    assert kept_down == [False]
    assert not os.path.exists(daemon.client.circus_pid_file)
    assert daemon.stopping
    assert daemon.repair_files() == []
    assert not os.path.exists(daemon.client.circus_pid_file)


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
    daemon.profile.process_control_backend = 'core.zeromq'
    daemon.send_lost_tasks_again()
    assert aiida_manager.sent == [] and aiida_manager.reset == []


# --- circus's configuration and the compatibility module ---------------------------------------


def test_circus_gets_stop_timeouts_and_no_stats_or_multicast(daemon_module, monkeypatch):
    circus = pytest.importorskip('circus')
    made = []
    monkeypatch.setattr(circus, 'get_arbiter', lambda **kwargs: made.append(kwargs) or 'arbiter')
    daemon_module.configure_circus(broker_service=False)
    arbiter = circus.get_arbiter(watchers=[{'name': 'w'}, {'name': 'v', 'graceful_timeout': 9}], statsd=True,
                                 stats_endpoint='ipc://stats')
    assert arbiter == 'arbiter'
    from circus.sighandler import SysHandler

    assert SysHandler.signal.__name__ == 'hand_to_the_loop'  # see the test of a signal during a write
    assert made == [
        {
            'watchers': [{'name': 'w', 'graceful_timeout': daemon_module.WORKER_STOP_TIMEOUT},
                         {'name': 'v', 'graceful_timeout': 9}],
            'statsd': False,
            'stats_endpoint': None,
            'multicast_endpoint': '',
        }
    ]


def test_the_zmq_broker_and_the_workers_run_without_verdi_with_verdis_arguments(daemon_module, monkeypatch):
    circus = pytest.importorskip('circus')
    made = []
    monkeypatch.setattr(circus, 'get_arbiter', lambda **kwargs: made.append(kwargs) or 'arbiter')
    daemon_module.configure_circus(broker_service=False)
    broker = {
        'name': 'aiida-default-zmq-broker-service',
        'cmd': "/opt/aiida/bin/verdi -p default daemon broker --service-dir '/h/a b' --log-file-path /h/log",
    }
    worker = {'name': 'aiida-default', 'cmd': '/opt/aiida/bin/verdi -p default daemon worker'}
    circus.get_arbiter(watchers=[broker, worker])
    import sys

    assert made[0]['watchers'][0]['cmd'] == (
        f"{sys.executable} {daemon_module.ZMQ_BROKER} -p default daemon broker --service-dir '/h/a b' "
        '--log-file-path /h/log'
    )
    assert made[0]['watchers'][1]['cmd'] == f'{sys.executable} {daemon_module.DAEMON_WORKER} -p default daemon worker'


def test_circus_runs_no_zmq_broker_where_aiida_init_runs_it_as_a_service(daemon_module, monkeypatch):
    circus = pytest.importorskip('circus')
    made = []
    monkeypatch.setattr(circus, 'get_arbiter', lambda **kwargs: made.append(kwargs) or 'arbiter')
    daemon_module.configure_circus(broker_service=True)
    broker = {'name': 'aiida-default-zmq-broker-service', 'cmd': 'verdi -p default daemon broker --service-dir d'}
    worker = {'name': 'aiida-default', 'cmd': 'verdi -p default daemon worker'}
    circus.get_arbiter(watchers=[broker, worker])
    assert [watcher['name'] for watcher in made[0]['watchers']] == ['aiida-default']


def zmq_daemon(daemon_module, tmp_path, monkeypatch):
    """A daemon service for a profile on the ZeroMQ broker, its status file in `tmp_path`."""
    profile = SimpleNamespace(name='default', process_control_backend='core.zeromq', process_control_config={})
    monkeypatch.setattr(daemon_module.compat, 'zmq_broker_status_file', lambda client: str(tmp_path / 'broker.status'))
    return daemon_module.Daemon(profile, FakeClient(tmp_path))


@pytest.mark.parametrize(
    ('status', 'up'),
    [
        (lambda now, pid: {'running': True, 'pid': pid, 'timestamp': now}, True),
        # Left by a broker of a killed container: its PID is another process's now (this one's).
        (lambda now, pid: {'running': True, 'pid': pid, 'timestamp': now - 3600 * 24 * 365 * 30}, False),
        (lambda now, pid: {'running': True, 'pid': 2**22 + 1, 'timestamp': now}, False),  # no such process
        (lambda now, pid: {'running': True, 'timestamp': now}, False),
        (lambda now, pid: ['not', 'a', 'status'], False),
    ],
)
def test_the_zmq_broker_is_up_once_a_running_broker_wrote_its_status(daemon_module, tmp_path, monkeypatch, status, up):
    import json
    import time

    service = zmq_daemon(daemon_module, tmp_path, monkeypatch)
    try:
        assert not service.zmq_broker_up()  # no file yet
        (tmp_path / 'broker.status').write_text(json.dumps(status(time.time(), os.getpid())))
        assert service.zmq_broker_up() is up
        (tmp_path / 'broker.status').write_text('{"pid": ')  # caught while the broker rewrites it
        assert not service.zmq_broker_up()
    finally:
        shutil.rmtree(service.socket_directory, ignore_errors=True)


class StoppingProcess:
    """A process as circus's Watcher.kill_process sees it, which ends `checks` is_alive() calls
    after its stop signal (never, with None)."""

    def __init__(self, checks):
        self.pid, self.stopping, self.checks, self.signals = 4242, False, checks, []

    def stop(self):
        pass

    def is_alive(self):
        if self.checks is None or not self.signals:
            return True
        self.checks -= 1
        return self.checks >= 0


def kill(process, graceful_timeout):
    """circus's Watcher.kill_process (as patched) run for `process` on a tornado loop; returns
    the signals sent."""
    from circus import watcher as circus_watcher
    from tornado.ioloop import IOLoop

    watcher = SimpleNamespace(
        name='aiida-default',
        stop_signal=15,
        graceful_timeout=graceful_timeout,
        stop_children=False,
        stream_redirector=None,
        send_signal=lambda pid, signum: process.signals.append(signum),
        send_signal_process=lambda process, signum, recursive=False: process.signals.append(signum),
        notify_event=lambda *args: None,
    )
    loop = IOLoop(make_current=False)
    try:
        loop.run_sync(lambda: circus_watcher.Watcher.kill_process(watcher, process), timeout=60)
    finally:
        loop.close()
    return process.signals


def test_a_stopped_workers_end_is_seen_before_circuss_first_wait_is_over(daemon_module, monkeypatch):
    pytest.importorskip('circus')
    from circus import watcher as circus_watcher
    from tornado.concurrent import Future

    monkeypatch.setattr(circus_watcher, 'tornado_sleep', lambda duration: Future())  # waits forever
    daemon_module.compat.check_stopping_processes_every(0.01)
    assert kill(StoppingProcess(checks=3), graceful_timeout=4) == [15]  # no SIGKILL


def test_a_worker_that_does_not_stop_is_still_killed_after_the_graceful_timeout(daemon_module):
    pytest.importorskip('circus')
    daemon_module.compat.check_stopping_processes_every(0.01)
    assert kill(StoppingProcess(checks=None), graceful_timeout=0.3) == [15, 9]


def test_a_broker_watcher_of_another_shape_is_left_as_it_is(daemon_module):
    watcher = {'name': 'aiida-default-zmq-broker-service', 'cmd': 'verdi daemon broker -p default'}
    daemon_module.compat.zmq_broker_without_verdi(watcher, ['python', 'broker'])
    assert watcher['cmd'] == 'verdi daemon broker -p default'


@pytest.mark.parametrize('command', ['verdi daemon worker -p default', 'verdi -p default daemon worker --extra'])
def test_a_worker_watcher_of_another_shape_is_left_as_it_is(daemon_module, command):
    watcher = {'name': 'aiida-default', 'cmd': command}
    daemon_module.compat.worker_without_verdi(watcher, ['python', 'worker'])
    assert watcher['cmd'] == command


def test_conflicts_of_a_stopping_arbiter_are_dropped_from_the_log_and_nothing_else(daemon_module):
    exc = pytest.importorskip('circus.exc')
    import aiida_daemon_compat as compat

    def record(error):
        return SimpleNamespace(exc_info=(type(error), error, None))

    stopping = exc.ConflictError('arbiter is already running arbiter_stop command')
    assert not compat.drop_conflicts_while_stopping(record(stopping))
    assert compat.drop_conflicts_while_stopping(record(exc.ConflictError('arbiter is already running start command')))
    assert compat.drop_conflicts_while_stopping(record(RuntimeError('arbiter_stop')))
    assert compat.drop_conflicts_while_stopping(SimpleNamespace(exc_info=None))


def test_the_installed_aiida_core_has_every_internal_the_service_uses(daemon_module):
    pytest.importorskip('aiida')
    import aiida_daemon_compat as compat

    assert compat.missing_internals() == []
    assert compat.main(['--check']) == 0


def test_the_check_names_a_missing_internal(daemon_module, monkeypatch, capsys):
    pytest.importorskip('aiida')
    import aiida_daemon_compat as compat
    from aiida.engine.daemon.client import DaemonClient

    monkeypatch.delattr(DaemonClient, '_clean_potentially_stale_pid_file')
    assert compat.missing_internals() == ['aiida-core: DaemonClient._clean_potentially_stale_pid_file']
    assert compat.main(['--check']) == 1
    assert 'missing internal: aiida-core: DaemonClient._clean_potentially_stale_pid_file' in capsys.readouterr().err


def test_a_missing_member_is_named_when_the_service_uses_it(daemon_module):
    import aiida_daemon_compat as compat

    with pytest.raises(compat.MissingInternal, match='DaemonClient._clean_potentially_stale_pid_file'):
        compat.clean_stale_pid_file(object())
    compat.write_version_file(object())  # before aiida-core 2.9 there is no version file to write


def lines_printed_by_a_new_python(code: str, **env: str) -> list[str]:
    """What `code` prints, run by a new Python process with the compatibility module importable
    (and `env` added to its environment): what it imports is not already imported by the tests."""
    import subprocess
    import sys

    import aiida_daemon_compat as compat

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


def test_the_last_starts_version_file_is_removed_and_nothing_else(daemon_module, tmp_path):
    import aiida_daemon_compat as compat

    version_file = tmp_path / 'daemon-env-info.json'
    version_file.write_text('{}')
    other = tmp_path / 'circus-default.pid'
    other.write_text('1\n')
    compat.remove_version_file(SimpleNamespace(_daemon_env_info_file=str(version_file)))
    assert not version_file.exists() and other.exists()
    compat.remove_version_file(SimpleNamespace(_daemon_env_info_file=str(version_file)))  # none there
    compat.remove_version_file(object())  # before aiida-core 2.9 there is no version file


def test_circus_loads_without_its_ssh_tunnels_until_they_are_used(daemon_module):
    pytest.importorskip('circus')
    # The daemon's own imports, in the order load_aiida_at_low_priority() runs them.
    code = (
        'import sys, aiida_daemon_compat as c\n'
        'c.defer_ssh_tunnels()\n'
        'c.import_daemon_client()\n'
        'import circus.arbiter, circus.util\n'
        "print('zmq.ssh.tunnel' in sys.modules)\n"
        'print(callable(circus.util.ssh.tunnel_connection))\n'
        "print('zmq.ssh.tunnel' in sys.modules)\n"
    )
    assert lines_printed_by_a_new_python(code) == ['False', 'True', 'True']


def run_signal_during_write(*arguments: str):
    """tests/python/circus_signal_during_write.py in a process of its own: (exit code, output).
    Its output goes to a file and it runs in a session of its own, so that what an arbiter that
    did not stop leaves behind (its watcher's process) is killed afterwards."""
    import signal
    import subprocess
    import sys
    import tempfile

    import aiida_daemon_compat as compat

    script = os.path.join(os.path.dirname(__file__), 'circus_signal_during_write.py')
    with tempfile.TemporaryFile(mode='w+') as output:
        process = subprocess.Popen(
            [sys.executable, script, *arguments],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, 'PYTHONPATH': os.path.dirname(compat.__file__)},
        )
        try:
            code = process.wait(timeout=300)
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        output.seek(0)
        return code, output.read()


def test_a_stop_signal_during_a_write_to_stderr_still_stops_circus_and_logs_no_error(daemon_module):
    pytest.importorskip('circus')
    code, out = run_signal_during_write('--patched')
    assert code == 0, out
    assert out.startswith('arbiter stopped\n'), out
    log = out.split('--- circus log ---', 1)[1]
    assert 'Got signal SIG_TERM' in log and 'Arbiter exiting' in log, out
    for alarm in ('Traceback', 'error', 'reentrant'):
        assert alarm.lower() not in log.lower(), out


def test_without_the_patch_circus_loses_a_stop_signal_that_lands_during_a_write(daemon_module):
    """The failure the patch removes, reproduced: circus's handler logs inside the signal handler."""
    pytest.importorskip('circus')
    code, out = run_signal_during_write()
    assert code == 2, out
    assert 'the write failed: reentrant call' in out, out


# --- the ZeroMQ broker service's profile, without the configuration's model ------------------------


def has_zmq_broker() -> bool:
    """True when the aiida-core under test has the ZeroMQ broker (2.9 and later)."""
    import importlib.util

    return importlib.util.find_spec('aiida.brokers.zeromq') is not None


def test_the_zmq_broker_service_finds_its_profile_without_the_configuration_model(daemon_module, tmp_path):
    pytest.importorskip('aiida')
    import json

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
    import aiida_daemon_compat as compat

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
