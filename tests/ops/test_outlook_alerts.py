"""The Outlook alert rules in docs/alerts are valid and fire when they should (promtool)."""

import shutil
import subprocess

from tests.support.services import ROOT, require


def test_outlook_alert_rules_pass_their_promtool_unit_tests():
    require(shutil.which("promtool") is not None, "promtool (the alert rules are tested with it)")
    result = subprocess.run(
        ["promtool", "test", "rules", "outlook.rules.test.yml"],
        cwd=ROOT / "docs" / "alerts",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
