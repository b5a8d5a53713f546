#!/bin/bash
# Scenario on_image (see scenarios.json).
set -e
source dev-container-features-test-lib
export PORT=2222
# shellcheck source=checks.sh
source "$(dirname "$0")/checks.sh"

reportResults
