#!/bin/bash
# Scenario on_debian (see scenarios.json).
set -e
source dev-container-features-test-lib
export PORT=2022
# shellcheck source=checks.sh
source "$(dirname "$0")/checks.sh"

reportResults
