"""Make AiiDA's `localhost-slurm` computer in the default profile, once (run by `computer`).

core.slurm over core.ssh_async to the ssh alias that aiida-slurm's prepare writes in
~/.ssh/config (127.0.0.1, the Feature's port, the user's key), polling the queue every second.
"""

import sys

from aiida import load_profile
from aiida.common.exceptions import NotExistent, ProfileConfigurationError
from aiida.orm import Computer, User

LABEL = 'localhost-slurm'


def main(alias: str, home: str) -> int:
    try:
        load_profile()
    except (ProfileConfigurationError, NotExistent) as error:
        print(f'aiida-slurm: no default AiiDA profile yet ({error}); no {LABEL} computer made')
        return 0
    try:
        computer = Computer.collection.get(label=LABEL)
        made = False
    except NotExistent:
        computer = Computer(
            label=LABEL,
            hostname='localhost',
            description='Slurm in this container, over SSH to localhost (aiida-slurm Feature)',
            transport_type='core.ssh_async',
            scheduler_type='core.slurm',
            workdir=f'{home}/aiida_run_slurm',
        ).store()
        computer.set_mpirun_command(['srun', '-n', '{tot_num_mpiprocs}'])
        computer.set_default_mpiprocs_per_machine(1)
        made = True
    computer.set_minimum_job_poll_interval(1.0)
    user = User.collection.get_default()
    if not computer.is_user_configured(user):
        computer.configure(user, host=alias, safe_interval=0.1, max_io_allowed=8, use_login_shell=False)
        made = True
    print(f'aiida-slurm: computer {LABEL} {"made" if made else "already there"}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1], sys.argv[2]))
