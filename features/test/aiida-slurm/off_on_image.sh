#!/bin/bash
# Scenario off_on_image (see scenarios.json): the Feature with enabled "" (false).
# shellcheck disable=SC2016 # the checks are `bash -c '...'` scripts: they expand in that shell
set -e
source dev-container-features-test-lib

check "the postStartCommand exits 0 and prints nothing" bash -c 'test -z "$(/usr/local/share/aiida-slurm/wait 2>&1)"'
check "no Slurm, munge or sshd installed" bash -c '! command -v scontrol && ! command -v slurmctld && ! command -v munged && ! test -e /usr/sbin/sshd'
check "no Slurm, munge or sshd running" bash -c '! grep -sqxE "slurmctld|slurmd|munged|sshd" /proc/[0-9]*/comm'
check "no services of the Feature in the image's tree" bash -c '! ls /etc/s6-overlay/s6-rc.d | grep -qE "slurm|munged|sshd"'
check "no computer localhost-slurm" bash -c 'aiida-init wait --timeout 300 aiida-prepare && ! verdi computer list -a | grep -q localhost-slurm'
check "AiiDA is ready as without the Feature" bash -c 'aiida-init wait --timeout 300 && verdi status'

reportResults
