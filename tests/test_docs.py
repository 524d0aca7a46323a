"""The README's Python snippet runs as written (docs that drift from the code fail here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_readme_library_snippet_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README should show the library in a ```python block"
    done = subprocess.run([sys.executable, "-c", blocks[0]], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "maj@16" in done.stdout


GPU_DOC = README.parent / "docs" / "gpu.md"


def test_gpu_doc_commands_parse_and_its_rl_config_is_valid():
    """docs/gpu.md's `ponder` and `bench/gpu.py` command lines parse with today's flags, its recipe
    exists, and its YAML builds an RLConfig (a renamed field or flag fails here)."""
    import importlib.util
    import shlex

    import yaml

    from ponder.cli import parser
    from ponder.train.rl import RLConfig

    text = GPU_DOC.read_text()
    lines = [line for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S) for line in block.splitlines()]
    commands = [shlex.split(line) for line in lines if line.startswith("ponder ")]
    benches = [shlex.split(line)[2:] for line in lines if line.startswith("python bench/gpu.py")]
    assert len(commands) >= 3 and len(benches) >= 3
    for argv in commands:
        args = parser().parse_args(argv[1:])
        if getattr(args, "recipe", None):
            from ponder.recipes import recipe

            recipe(args.recipe, args.command)
    spec = importlib.util.spec_from_file_location("bench_gpu", README.parent / "bench" / "gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for argv in benches:
        bench.parse_args(argv)
    (config,) = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    assert RLConfig(**yaml.safe_load(config)).minibatches == 16
    assert "(cluster.md)" in text


CLUSTER_DOC = README.parent / "docs" / "cluster.md"


def test_cluster_doc_commands_parse_into_rl_runs_on_workers():
    """docs/cluster.md's `ponder rl` and `bench/cluster.py` command lines parse with today's flags and
    build RL configs on rollout workers with the importance correction on (a renamed flag fails here)."""
    import importlib.util
    import shlex

    from ponder.cli import parser
    from ponder.cli.args import build_config
    from ponder.train.rl import RLConfig

    text = CLUSTER_DOC.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    commands = [shlex.split(line) for line in lines if line.startswith("ponder rl ")]
    benches = [shlex.split(line.split("#")[0])[3:] for line in lines if "python bench/cluster.py" in line]
    assert len(commands) >= 3 and len(benches) >= 2
    for argv in commands:
        cfg = build_config(RLConfig, parser().parse_args(argv[1:]))
        assert cfg.rollout_workers >= 1 and cfg.corrects_importance, argv
    spec = importlib.util.spec_from_file_location("bench_cluster", README.parent / "bench" / "cluster.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for argv in benches:
        bench.parse_args(argv)
    assert "(gpu.md)" in text
