"""/etc/init/aiida-profile-template: the build's profile copied with new UUIDs, bad input refused.

A small template is made here in aiida-core's layout (config.json, the storage folder with its
SQLite database and disk-objectstore container configuration); the real one is exercised by the
image tests (tests/it/images.rs).
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
    (target / 'config.json').write_text('{"kept": true}')
    with pytest.raises(SystemExit, match=r'config\.json exists'):
        template_module.copy(template, target)
    assert json.loads((target / 'config.json').read_text()) == {'kept': True}
    assert not (target / 'repository').exists()


@pytest.mark.parametrize(
    ('backend', 'message'),
    [('core.psql_dos', r"profile 'default' has storage 'core\.psql_dos'"), (None, r'not an AiiDA configuration')],
)
def test_a_template_that_is_not_a_sqlite_profile_is_refused_by_name(tmp_path, backend, message):
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
