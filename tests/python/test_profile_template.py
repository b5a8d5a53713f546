"""/etc/init/aiida-profile-template: the build's profile copied with new UUIDs, bad input refused.

A small template is made here in aiida-core's layout (config.json, the storage folder with its
SQLite database and disk-objectstore container configuration; for PostgreSQL the configuration and
repository, with a database that does not answer); the real ones, with a real PostgreSQL, are
exercised by the image tests (tests/it/images.rs).
"""

import json
import sqlite3

import pytest
from conftest import load_script

template_module = load_script('aiida_profile_template', 'aiida-profile-template')

REPOSITORY = 'a' * 32
COMPUTER = '00000000-0000-4000-8000-000000000001'


def make_template(root, target, backend='core.sqlite_dos'):
    """A template in `root` whose configuration names its storage below `target`."""
    storage = root / 'repository' / f'sqlite_dos_{"b" * 32}'
    (storage / 'container').mkdir(parents=True)
    (storage / 'container' / 'config.json').write_text(json.dumps({'container_id': REPOSITORY}))
    database = sqlite3.connect(storage / 'database.sqlite')
    with database:
        database.execute('CREATE TABLE db_dbsetting (key TEXT, val TEXT)')
        database.execute("INSERT INTO db_dbsetting VALUES ('repository|uuid', ?)", (json.dumps(REPOSITORY),))
        database.execute('CREATE TABLE db_dbcomputer (id INTEGER, uuid TEXT)')
        database.execute('INSERT INTO db_dbcomputer VALUES (1, ?)', (COMPUTER,))
    database.close()
    config = {
        'profiles': {
            'default': {
                'storage': {'backend': backend, 'config': {'filepath': str(target / storage.relative_to(root))}},
                'PROFILE_UUID': 'c' * 32,
            }
        },
        'default_profile': 'default',
    }
    (root / 'config.json').write_text(json.dumps(config))
    (root / 'aiida-prepare.stamp').write_text('schema=main_0002\n')


def identity(config_dir):
    profile = json.loads((config_dir / 'config.json').read_text())['profiles']['default']
    path = profile['storage']['config']['filepath']
    database = sqlite3.connect(f'{path}/database.sqlite')
    try:
        query = "SELECT val FROM db_dbsetting WHERE key = 'repository|uuid'"
        setting = json.loads(database.execute(query).fetchone()[0])
        computer = database.execute('SELECT uuid FROM db_dbcomputer').fetchone()[0]
    finally:
        database.close()
    container = json.loads((config_dir.joinpath(path, 'container', 'config.json')).read_text())['container_id']
    return profile['PROFILE_UUID'], path, container, setting, computer


def test_the_copy_has_new_uuids_that_agree_with_each_other(tmp_path):
    template, target = tmp_path / 'template', tmp_path / 'home' / '.aiida'
    make_template(template, target)
    assert template_module.copy(template, target) == ['default']
    profile_uuid, path, container, setting, computer = identity(target)
    assert path.startswith(str(target / 'repository' / 'sqlite_dos_')) and 'b' * 32 not in path
    assert profile_uuid != 'c' * 32
    assert container == setting != REPOSITORY
    assert computer != COMPUTER
    assert (target / 'aiida-prepare.stamp').read_text() == 'schema=main_0002\n'
    # The template itself is unchanged, and a second copy gets other UUIDs again.
    second = tmp_path / 'other' / '.aiida'
    make_template(tmp_path / 'template-2', second)
    template_module.copy(tmp_path / 'template-2', second)
    assert set(identity(second)).isdisjoint(identity(target))


def test_an_existing_configuration_is_never_overwritten(tmp_path):
    template, target = tmp_path / 'template', tmp_path / '.aiida'
    make_template(template, target)
    target.mkdir()
    kept = {'profiles': {'mine': {'storage': {}}}, 'default_profile': 'mine'}
    (target / 'config.json').write_text(json.dumps(kept))
    with pytest.raises(SystemExit, match=r'config\.json exists with profiles'):
        template_module.copy(template, target)
    assert json.loads((target / 'config.json').read_text()) == kept
    assert not (target / 'repository').exists()


def test_a_configuration_with_no_profile_gets_the_copy_and_keeps_its_settings(tmp_path):
    # What any `verdi` run writes before the first start made the profile.
    template, target = tmp_path / 'template', tmp_path / '.aiida'
    make_template(template, target)
    target.mkdir()
    written_by_verdi = {
        'CONFIG_VERSION': {'CURRENT': 10},
        'profiles': {},
        'options': {'logging.aiida_loglevel': 'INFO'},
    }
    (target / 'config.json').write_text(json.dumps(written_by_verdi))
    assert template_module.copy(template, target) == ['default']
    config = json.loads((target / 'config.json').read_text())
    assert list(config['profiles']) == ['default']
    assert config['default_profile'] == 'default'
    assert config['options'] == {'logging.aiida_loglevel': 'INFO'}
    assert config['CONFIG_VERSION'] == {'CURRENT': 10}


@pytest.mark.parametrize(
    ('backend', 'message'),
    [('core.sqlite_zip', r"profile 'default' has storage 'core\.sqlite_zip', not one of"), (None, r'not an AiiDA')],
)
def test_a_template_of_another_storage_is_refused_by_name(tmp_path, backend, message):
    template, target = tmp_path / 'template', tmp_path / '.aiida'
    make_template(template, target, backend=backend or 'core.sqlite_dos')
    if backend is None:
        (template / 'config.json').write_text('{"profiles": ')
    with pytest.raises(SystemExit, match=message):
        template_module.copy(template, target)
    assert not (target / 'config.json').exists()


def test_a_storage_outside_the_target_is_refused(tmp_path):
    template = tmp_path / 'template'
    make_template(template, tmp_path / 'elsewhere')
    with pytest.raises(SystemExit, match=r'not below .*/\.aiida/repository'):
        template_module.copy(template, tmp_path / '.aiida')


def make_psql_template(root, target):
    """A PostgreSQL template in `root` (repository below `target`) whose database does not answer
    (nothing listens on port 1; the base image has no psql at all), with a stamp that records a password."""
    repository = root / 'repository' / 'default'
    (repository / 'container').mkdir(parents=True)
    (repository / 'container' / 'config.json').write_text(json.dumps({'container_id': REPOSITORY}))
    storage = {
        'database_hostname': '127.0.0.1',
        'database_port': 1,
        'database_name': 'aiida-default',
        'database_username': 'aiida-default',
        'database_password': '',
        'repository_uri': (target / 'repository' / 'default').as_uri(),
    }
    config = {'profiles': {'default': {'storage': {'backend': 'core.psql_dos', 'config': storage}}}}
    (root / 'config.json').write_text(json.dumps(config))
    (root / 'aiida-prepare.stamp').write_text(
        'schema=main_0002\npsql=postgresql://aiida-default:old@localhost:5432/aiida-default?connect_timeout=10\n'
    )


def test_a_postgresql_template_whose_database_is_not_the_builds_is_not_copied(tmp_path):
    template, target = tmp_path / 'template', tmp_path / '.aiida'
    make_psql_template(template, target)
    with pytest.raises(template_module.NotTheTemplatesDatabase, match=r"the database 'aiida-default' is not the one"):
        template_module.copy(template, target)
    assert not target.exists()
    assert template_module.main([str(template), str(target)]) == 3
    assert not target.exists()


def test_the_stamps_password_is_replaced_and_nothing_else(tmp_path):
    make_psql_template(tmp_path, tmp_path)
    template_module.set_stamp_password(tmp_path, 'new password/1')
    assert (tmp_path / 'aiida-prepare.stamp').read_text() == (
        'schema=main_0002\npsql=postgresql://aiida-default:new%20password%2F1@localhost:5432/aiida-default'
        '?connect_timeout=10\n'
    )
    template_module.set_stamp_password(tmp_path, '')
    assert 'psql=postgresql://aiida-default:@localhost:5432/' in (tmp_path / 'aiida-prepare.stamp').read_text()


def test_drop_unused_leaves_a_database_it_cannot_identify_as_the_builds(tmp_path, capsys):
    """--drop-unused drops only a database proven to be the build's (the real drop, with a real
    PostgreSQL, is checked by tests/it/bad_env.rs); one that does not answer is left alone."""
    template = tmp_path / 'template'
    make_psql_template(template, tmp_path / '.aiida')
    before = (template / 'config.json').read_text()
    assert template_module.main(['--drop-unused', str(template)]) == 0
    assert 'dropped' not in capsys.readouterr().out
    assert (template / 'config.json').read_text() == before
