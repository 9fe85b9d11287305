"""Every cluster rule with params takes them as its params file (workflow/rules/settings.smk), so
an edit reruns its jobs even where Snakemake lost their provenance; a rule added without one is
named here."""

from __future__ import annotations

import re

from workflow_run import ROOT

RULES = sorted((ROOT / "workflow/rules").glob("*.smk"))


def rule_blocks() -> dict[str, str]:
    """``{rule name: its text}`` of every named rule (snakefmt's layout: a block ends at a blank line
    followed by a line that is not indented)."""
    blocks = {}
    for path in RULES:
        for m in re.finditer(r"^rule (\w+):\n(.*?)(?=\n\n\S|\Z)", path.read_text(), re.S | re.M):
            blocks[m[1]] = m[2]
    return blocks


def local_rules() -> set[str]:
    names = set()
    for path in RULES:
        for block in re.findall(r"^localrules:\n((?:    \w+,\n)+)", path.read_text(), re.M):
            names |= set(re.findall(r"(\w+),", block))
    return names | {name for name, text in rule_blocks().items() if "localrule: True" in text}


def test_every_cluster_rule_with_params_takes_its_params_file():
    blocks, local = rule_blocks(), local_rules()
    cluster = {name for name, text in blocks.items() if name not in local and "\n    params:" in text}
    assert {"lm_train", "probe_train", "vit_train", "rfm_lnp", "hutchinson_cv", "images_convert"} <= cluster
    missing = [name for name in sorted(cluster) if f'settings=params_file("{name}")' not in blocks[name]]
    assert missing == [], f"cluster rules without their params file (settings.smk): {missing}"
