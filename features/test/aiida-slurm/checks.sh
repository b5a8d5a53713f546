#!/bin/bash
# shellcheck disable=SC2016 # the checks are `bash -c '...'` scripts: they expand in that shell
# The checks shared by the aiida-slurm scenarios (sourced by each, after the test library).
# PORT is the scenario's sshPort.

check "runs as the remote user" test "$(id -un)" = aiida
check "Slurm and sshd become ready, the computer is made" /usr/local/share/aiida-slurm/wait 300
check "scontrol ping answers" bash -c 'scontrol ping | grep -q "is UP"'
check "the node is idle" bash -c 'test "$(sinfo -h -n localhost -o %T)" = idle'
check "slurmctld, slurmd, munged and sshd run as the remote user" bash -c '
    for name in slurmctld slurmd munged sshd; do
        pid=$(grep -lx "$name" /proc/[0-9]*/comm | head -n 1 | cut -d/ -f3)
        test -n "$pid" && test "$(stat -c %U "/proc/$pid")" = aiida || exit 1
    done'
check "a job runs and writes its output" bash -c 'cd /tmp && test "$(srun -N1 -n1 echo job-ran)" = job-ran'
check "the munge key was made in this container, none in the image" bash -c '
    test -s /var/lib/aiida-slurm/munge/munge.key && ! test -e /etc/munge/munge.key && ! ls /etc/ssh/ssh_host_* 2>/dev/null'
check "sshd accepts the user key on 127.0.0.1:$PORT" ssh localhost-slurm true
check "sshd listens on 127.0.0.1 only" bash -c "! (exec 3<>/dev/tcp/\$(hostname -i | cut -d' ' -f1)/$PORT) 2>/dev/null"
check "the key is authorised from localhost only" grep -q '^from="127.0.0.1,::1"' /var/lib/aiida-slurm/ssh/authorized_keys
check "verdi computer test localhost-slurm passes" verdi computer test localhost-slurm
check "the computer is made once" bash -c '/usr/local/share/aiida-slurm/computer | grep -q "already there"'
check "aiida-init reports the services ready" bash -c 'aiida-init status | grep -E "^(slurmctld|slurmd|sshd|munged) .* ready"'
