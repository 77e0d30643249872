"""Every command the docs show composes: a stale override in README.md or docs/ fails here.

The extractor reads README.md, DEVELOPERS.md, docs/*.md, data/README.md and conf/local/README.md
(code blocks, with `\\` continuations and `#` comments, and inline `code` spans) and the
Makefile's recipes, and finds every `python train.py|evaluate.py|upsample.py ...` and
`python -m audio_superres.bench ...` command. Each script command is composed through Hydra's
compose API with its overrides (what `python X.py ... --cfg job` prints; nothing runs) and its
config resolved; a multirun (`-m`, or a config that sets `hydra.mode: MULTIRUN`) is composed once
per value of every swept setting, its own and those of the sweep config it selects
(`hydra.sweeper.params`). Bench commands, and the `--flags` docs/performance.md and
docs/inference.md name on their own, are parsed by `bench/cli.py`'s parser. Single overrides
named in prose (`data.corpus.on_bad_file=skip`) must compose in one of the scripts (with one
option of the group they lie in, if need be), and docs/training.md's config-group table must
name every option of `conf/`.

Placeholders (the rule, also in DEVELOPERS.md):
- a value in capitals (`CKPT`, `RUN/checkpoints/best.ckpt`, `FILE`, `DATE`, `NAME`) or `...`
  stands for the reader's own: composition checks the key (and the group, for a group option),
  not the value, so `ckpt_path=CKPT` composes as written; a placeholder group option
  (`local=NAME`) and a `key=...` override are left out;
- `[...]` around overrides marks them optional: they are composed too (brackets dropped);
- `VAR=value` before `python` and `make` variables are the shell's and make's, not overrides.
"""

from __future__ import annotations

import copy
import functools
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from audio_superres.bench.cli import build_parser

from .conftest import CONF_DIR, REPO

DOCS = sorted(
    {
        REPO / "README.md",
        REPO / "DEVELOPERS.md",
        REPO / "data" / "README.md",
        REPO / "conf" / "local" / "README.md",
        *(REPO / "docs").glob("*.md"),
    }
)
SCRIPTS = {"train.py": "train", "evaluate.py": "evaluate", "upsample.py": "upsample"}
BENCH = "audio_superres.bench"
PLACEHOLDER = re.compile(r"^(\.\.\.|[A-Z][A-Z0-9_]*(/.*)?|.*/[A-Z][A-Z0-9_]*(/.*)?)$")
MAX_POINTS = 12  # values composed per multirun: every value of every axis at least once


@dataclass(frozen=True)
class Command:
    """One documented command: where it is shown, the program, and its arguments."""

    where: str
    program: str  # "train" | "evaluate" | "upsample" | "bench"
    args: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: {self.program} {' '.join(self.args)}"


# -- extraction ------------------------------------------------------------------------------


def _strip_comment(line: str) -> str:
    """Drop a shell comment (`#` after whitespace, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _logical_lines(block: str) -> Iterator[tuple[int, str]]:
    """(line index, line) of a shell block: comments dropped, `\\` continuations joined."""
    pending, start = "", 0
    for i, raw in enumerate(block.splitlines()):
        line = _strip_comment(raw).rstrip()
        if not pending:
            start = i
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def _unbracket(tokens: list[str]) -> list[str]:
    """`[a=1 b=2]` (optional overrides) -> `a=1 b=2`; `key=[x,y]` (a list value) is kept."""
    out, depth = [], 0
    for tok in tokens:
        if tok.startswith("[") and (depth or "=" not in tok.split("[", 1)[0]):
            depth += 1
            tok = tok[1:]
        if depth and tok.endswith("]") and tok.count("[") < tok.count("]"):
            depth -= 1
            tok = tok[:-1]
        if tok:
            out.append(tok)
    return out


def commands_in_text(text: str, where: str, shell: bool = False) -> list[Command]:
    """The script and bench commands of one shell line (`shell`: it must start with the
    command) or inline code span (a bare `train.py key=value` counts there)."""
    found = []
    text = re.sub(r"<[^<>]*>", " ", text)  # `<the row's command>`: the reader's own
    for segment in re.split(r"\s*(?:;|&&|\|\||\|)\s*", text):
        try:
            tokens = shlex.split(segment)
        except ValueError:
            tokens = segment.split()
        tokens = [t for t in _unbracket(tokens) if t != "..."]
        while tokens and (tokens[0] in ("then", "do", "else", "exec", "time")
                          or re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", tokens[0])):
            tokens = tokens[1:]  # shell keywords, environment assignments
        if tokens and (tokens[0].endswith("python") or tokens[0].endswith("python3")):
            tokens = tokens[1:]
        elif shell:
            continue
        elif tokens and tokens[0] == "bench":  # `bench model --models ...` in prose
            tokens = ["-m", BENCH, *tokens[1:]]
        if len(tokens) >= 2 and tokens[0] == "-m" and tokens[1] == BENCH:
            found.append(Command(where, "bench", tuple(tokens[2:])))
        elif tokens and Path(tokens[0]).name in SCRIPTS and (
            len(tokens) > 1 or not text.strip().startswith(tokens[0])
        ):
            found.append(Command(where, SCRIPTS[Path(tokens[0]).name], tuple(tokens[1:])))
    return found


def commands_in_markdown(text: str, name: str) -> list[Command]:
    """Commands of a markdown file: shell code blocks line by line, then inline code spans."""
    found: list[Command] = []
    blocks = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)
    for m in blocks.finditer(text):
        if m.group(1).strip() not in ("", "bash", "sh", "shell", "console"):
            continue
        first = text.count("\n", 0, m.start(2)) + 1
        for i, line in _logical_lines(m.group(2)):
            found += commands_in_text(line, f"{name}:{first + i}", shell=True)
    prose = blocks.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for m in re.finditer(r"(?<!`)`([^`]+)`(?!`)", prose):
        span = " ".join(m.group(1).split())
        script = r"(^|\s|/)(train|evaluate|upsample)\.py\s+\S*="
        if re.search(script + r"|audio_superres\.bench\b|^bench ", span):
            found += commands_in_text(span, f"{name}:{text.count(chr(10), 0, m.start()) + 1}")
    return found


def _make_vars(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(:=|\?=|=)\s*(.*)$", line)
        if m:
            out[m.group(1)] = m.group(3).strip()
    return out


def commands_in_makefile(path: Path) -> list[Command]:
    """The script commands of every Makefile recipe, `$(call ...)` and `$(MAKE) target VAR=...`
    expanded, variables at their defaults (`$(shell ...)` values become DATE)."""
    lines = path.read_text().splitlines()
    defines: dict[str, list[str]] = {}
    recipes: dict[str, list[str]] = {}
    current: list[str] | None = None
    name = None
    for line in lines:
        if line.startswith("define "):
            name, current = line.split()[1], []
            defines[name] = current
        elif line.startswith("endef"):
            current = None
        elif current is not None and name in defines and current is defines[name]:
            current.append(line)
        elif re.match(r"^[A-Za-z][\w-]*:(?!=)", line):
            name = line.split(":", 1)[0]
            current = recipes[name] = []
        elif line.startswith("\t") and name in recipes and current is recipes.get(name):
            current.append(line)
        else:
            current = None
    variables = _make_vars([ln for ln in lines if not ln.startswith("\t")])

    def expand(text: str, env: dict[str, str]) -> str:
        for _ in range(10):
            new = re.sub(r"\$\(shell [^)]*\)", "DATE", text)
            new = re.sub(r"\$\(([A-Za-z_0-9]+)\)", lambda m: env.get(m.group(1), ""), new)
            if new == text:
                break
            text = new
        return text

    def recipe_lines(target: str, env: dict[str, str], depth: int = 0) -> Iterator[str]:
        body = "\n".join(ln.strip() for ln in recipes.get(target, []))
        for _, line in _logical_lines(body):
            line = line.lstrip("@-")
            call = re.match(r"\$\(call (\w+),(.*)\)$", line.strip())
            if call:
                args = call.group(2).split(",")
                inner = {**env, **{str(i + 1): expand(a, env) for i, a in enumerate(args)}}
                text = "\n".join(ln.strip() for ln in defines[call.group(1)])
                for _, sub in _logical_lines(text):
                    yield expand(sub.lstrip("@-"), inner)
                continue
            sub_make = re.match(r"\$\(MAKE\)\s+([\w-]+)(.*)$", line.strip())
            if sub_make and depth < 3:
                pairs = re.findall(r'(\w+)="([^"]*)"|(\w+)=(\S+)', sub_make.group(2))
                assigned = {a or c: b or d for a, b, c, d in pairs}
                yield from recipe_lines(sub_make.group(1), {**env, **assigned}, depth + 1)
                continue
            yield expand(line, env)

    env = {**variables, "PY": ".venv/bin/python"}
    found = []
    for target in recipes:
        for line in recipe_lines(target, env):
            for cmd in commands_in_text(line.strip(), f"Makefile:{target}", shell=True):
                if cmd.program != "bench":  # `bench $(BENCH_ARGS)`: the args are the caller's
                    found.append(cmd)
    return found


def documented_commands() -> list[Command]:
    found = []
    for path in DOCS:
        if path.is_file():
            found += commands_in_markdown(path.read_text(), str(path.relative_to(REPO)))
    found += commands_in_makefile(REPO / "Makefile")
    return found


# -- composition -----------------------------------------------------------------------------


def _is_group(key: str) -> bool:
    return "/" in key or (CONF_DIR / key).is_dir()


def _compose(program: str, overrides: list[str]) -> DictConfig:
    return copy.deepcopy(_compose_cached(program, tuple(overrides)))


@functools.lru_cache(maxsize=512)
def _compose_cached(program: str, overrides: tuple[str, ...]) -> DictConfig:
    """Hydra's composition of one command (the same command in several docs composes once)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(program, overrides=list(overrides), return_hydra_config=True)


def _resolve(cfg: DictConfig) -> None:
    """Resolve every interpolation (resolvers, ${hydra:...}); `???` values may stay missing."""
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.runtime.output_dir = "/tmp/documented-command"
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    finally:
        HydraConfig.instance().cfg = None  # no Hydra run state left for the next test


def _sweep_values(override: Override) -> list[str]:
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return [str(v) for v in value.list]
    if isinstance(value, RangeSweep):
        return [str(v) for v in override.sweep_iterator()]
    if isinstance(value, IntervalSweep):
        return [str(value.start), str(value.end)]
    raise AssertionError(f"unexpected sweep {override.input_line}")


def _axes(overrides: list[Override]) -> dict[str, list[str]]:
    return {o.get_key_element(): _sweep_values(o) for o in overrides if o.is_sweep_override()}


def compose_command(program: str, args: list[str]) -> list[DictConfig]:
    """Compose a script command as `python <program>.py ARGS --cfg job` would (each job of a
    multirun); raise what Hydra raises for a stale override."""
    multirun = False
    overrides = []
    for arg in args:
        if arg in ("-m", "--multirun"):
            multirun = True
        elif arg.startswith("-"):
            raise ValueError(f"{arg}: not a Hydra flag a documented command should need")
        elif "=" not in arg:
            raise ValueError(f"{arg!r} is not an override (key=value)")
        else:
            key, value = arg.split("=", 1)
            if value == "..." or (PLACEHOLDER.match(value) and _is_group(key.lstrip("+~"))):
                continue  # a placeholder for the reader's own value
            overrides.append(arg)
    parsed = OverridesParser.create().parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    axes = _axes(parsed)
    base = _compose(program, fixed + [f"{k}={v[0]}" for k, v in axes.items()])
    multirun = multirun or base.hydra.mode == "MULTIRUN"
    if axes and not multirun:
        raise ValueError(f"sweep override(s) {sorted(axes)} without -m (Hydra refuses them)")
    params = OmegaConf.select(base, "hydra.sweeper.params") or {}
    if multirun and params:
        swept = OverridesParser.create().parse_overrides(
            [f"{k}={v}" for k, v in params.items() if k not in axes]
        )
        axes.update(_axes(swept))
        fixed += [o.input_line for o in swept if not o.is_sweep_override()]
    if not axes:
        _resolve(base)
        return [base]
    n = min(MAX_POINTS, max(len(v) for v in axes.values()))
    configs = []
    for i in range(n):
        point = [f"{k}={v[i % len(v)]}" for k, v in axes.items()]
        cfg = _compose(program, fixed + point)
        _resolve(cfg)
        configs.append(cfg)
    return configs


def parse_bench(args: list[str]) -> None:
    """Parse bench arguments with bench/cli.py's parser (SystemExit on an unknown flag).

    A placeholder section (`SECTION`) is left out; a placeholder value of a numeric flag
    (`--sample-rate SR`) is parsed as 1."""
    parser = build_parser()
    types = {s: a.type for a in parser._actions for s in a.option_strings}
    kept: list[str] = []
    for arg in args:
        flag = kept[-1] if kept and kept[-1].startswith("--") else None
        if PLACEHOLDER.match(arg):
            if flag is None:
                continue
            if types.get(flag) in (int, float):
                arg = "1"
        kept.append(arg)
    parser.parse_args(kept)


# Commands shown as what a reader's own addition would allow, not what this repository has
# (keep this short: every entry is a command the test cannot check).
NOT_IN_THIS_REPOSITORY = {  # (program, args)
    # docs/models.md "Add a model": the example's own conf/model/hold.yaml
    ("train", ("model=hold",)),
}
COMMANDS = [c for c in documented_commands()
            if (c.program, c.args) not in NOT_IN_THIS_REPOSITORY]


def test_the_docs_show_commands_of_every_kind() -> None:
    programs = {c.program for c in COMMANDS}
    assert programs == {"train", "evaluate", "upsample", "bench"}, programs
    assert len(COMMANDS) > 40
    assert any(c.where.startswith("Makefile:demo") for c in COMMANDS)
    assert any("-m" in c.args for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_documented_command_composes(command: Command) -> None:
    if command.program == "bench":
        parse_bench(list(command.args))
    else:
        assert compose_command(command.program, list(command.args))


# -- the check can fail --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("program", "args"),
    [
        ("train", ["trainer.nonexistent_key=1"]),
        ("train", ["model=nope"]),
        ("train", ["experiment=demo", "data.corpus.no_such_option=skip"]),
        ("train", ["seed=1,2"]),  # a sweep without -m
        ("train", ["-m", "sweep=no_such_grid"]),
        ("evaluate", ["ckpt_path=CKPT", "data.test_speakers=[en_GB]"]),  # evaluate has no data
        ("upsample", ["ckpt_path=CKPT", "input_kinds=hr"]),
    ],
)
def test_a_stale_command_fails_to_compose(program: str, args: list[str]) -> None:
    with pytest.raises(Exception):  # noqa: B017  (Hydra's, OmegaConf's or ours: any error)
        compose_command(program, args)


def test_a_multirun_composes_every_swept_value(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    real = _compose

    def recording(program: str, overrides: list[str]) -> DictConfig:
        seen.append(overrides)
        return real(program, overrides)

    monkeypatch.setattr(f"{__name__}._compose", recording)
    configs = compose_command("train", ["-m", "sweep=depth", "experiment=demo", "seed=1,2"])
    assert len(configs) == 3  # model_depth 2,3,4 (the longest axis); width and seed cycle
    assert sorted(c.model_depth for c in configs) == [2, 3, 4]
    assert {c.model_width for c in configs} == {16, 32} and {c.seed for c in configs} == {1, 2}
    assert all(len(o) > 1 for o in seen)


def test_bench_flags_are_checked() -> None:
    parse_bench(["upsample", "--ckpt", "CKPT", "--upsample-kinds", "lr", "hr"])
    for wrong in (["upsample", "--ckpt", "CKPT", "--kinds", "lr"], ["nosuchsection"]):
        with pytest.raises(SystemExit):
            parse_bench(wrong)


def test_the_extractor_reads_blocks_continuations_comments_and_inline_spans() -> None:
    text = (
        "Run `python train.py experiment=demo seed=3` or `evaluate.py model=cubic ratio=4`.\n"
        "`train.py` alone is prose, and so is `python -m audio_superres.models.summary`.\n"
        "```bash\n"
        "python train.py data=folder \\\n"
        "    model=audiounet   # a comment\n"
        "WANDB_MODE=offline python upsample.py ckpt_path=CKPT input=x.wav output=out/\n"
        "python -m audio_superres.bench seams --ckpt CKPT [--overlap 4096]\n"
        "```\n"
        "```python\nprint('python train.py nope=1')\n```\n"
    )
    found = [(c.program, c.args) for c in commands_in_markdown(text, "x.md")]
    assert found == [
        ("train", ("data=folder", "model=audiounet")),
        ("upsample", ("ckpt_path=CKPT", "input=x.wav", "output=out/")),
        ("bench", ("seams", "--ckpt", "CKPT", "--overlap", "4096")),
        ("train", ("experiment=demo", "seed=3")),
        ("evaluate", ("model=cubic", "ratio=4")),
    ]


BENCH_DOCS = ("docs/performance.md", "docs/inference.md")


@pytest.mark.parametrize("doc", BENCH_DOCS)
def test_bench_flags_named_in_prose_exist(doc: str) -> None:
    """The benchmark pages name flags on their own (`--models`, `--upsample-kinds lr hr`): each is
    an option of bench/cli.py."""
    options = {s for a in build_parser()._actions for s in a.option_strings}
    text = (REPO / doc).read_text()
    named = [m.group(1).split()[0] for m in re.finditer(r"(?<!`)`(--[^`]+)`", text)]
    assert named
    assert [f for f in named if f not in options] == []


# -- single overrides named in prose ------------------------------------------------------------


def _top_level_keys() -> set[str]:
    keys = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}
    for program in SCRIPTS.values():
        keys |= set(_compose(program, []).keys())
    return keys - {"hydra"} | {"hydra"}


def documented_overrides() -> list[tuple[str, str]]:
    """(where, override) for every inline `key=value` span of README.md and docs/*.md whose key
    is a setting of train.py, evaluate.py or upsample.py (`norm='mag'`, `torch==2.11.0` are
    not). Placeholder values (`N`, `...`, `<kind>`, empty, globs) are left out."""
    keys = _top_level_keys()
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = path.read_text()
        for m in re.finditer(r"(?<!`)`([a-z_+~][\w./@+-]*)=([^`\s=]*)`(?!`)", text):
            key, value = m.groups()
            root = re.split(r"[./@]", key.lstrip("+~"))[0]
            if root not in keys or value in ("", "...") or PLACEHOLDER.match(value) or any(
                c in value for c in "<*"
            ) or value.startswith("[..."):
                continue
            line = text.count("\n", 0, m.start()) + 1
            found += [(f"{path.relative_to(REPO)}:{line}", f"{key}={v}") for v in value.split("|")]
    return found


# Overrides the docs show to illustrate an error: each must fail.
DOCUMENTED_FAILURES = {"model=nope"}


def _contexts(key: str) -> list[list[str]]:
    """The settings an override of `key` may need first: none, or one option of the group its
    key lies in (`model.pool` -> `model=tfilm`; `optimizer@objective.disc_optimizer` ->
    `objective=adversarial`; `hydra.sweeper.*` -> `hparams_search=...`)."""
    package = key.split("@", 1)[1] if "@" in key else key
    group = "hparams_search" if key.startswith("hydra.sweeper.") else package.split(".")[0]
    if "." not in package or not (CONF_DIR / group).is_dir():
        return [[]]
    return [[], *([f"{group}={p.stem}"] for p in sorted((CONF_DIR / group).glob("*.yaml")))]


def compose_override(override: str) -> None:
    """One override composes in one of the scripts as they are, or, when its key is inside a
    config group (`model.pool=false`), with one of that group's options (`model=tfilm`)."""
    errors = []
    for program in SCRIPTS.values():
        for context in _contexts(override.split("=", 1)[0].lstrip("+~")):
            try:
                compose_command(program, [*context, override])
                return
            except Exception as exc:  # noqa: BLE001  (any failure: try the next context)
                errors.append(f"{program} {' '.join(context)}: {exc}")
    raise AssertionError(f"{override} composes nowhere:\n" + "\n".join(errors[:3]))


OVERRIDES = documented_overrides()


def test_prose_names_overrides() -> None:
    assert len(OVERRIDES) > 30
    assert any(o == "data.corpus.on_bad_file=skip" for _, o in OVERRIDES)


@pytest.mark.parametrize(("where", "override"), OVERRIDES, ids=[f"{w} {o}" for w, o in OVERRIDES])
def test_documented_override_composes(where: str, override: str) -> None:
    if override in DOCUMENTED_FAILURES:
        with pytest.raises(AssertionError, match="composes nowhere"):
            compose_override(override)
    else:
        compose_override(override)


def test_a_stale_single_override_fails() -> None:
    for stale in ("model.no_such_knob=1", "data.corpus.on_bad_fil=skip", "lowpass=nope"):
        with pytest.raises(AssertionError, match="composes nowhere"):
            compose_override(stale)


def test_config_group_table_lists_every_option() -> None:
    """docs/training.md's group table names every group of conf/ and every option in it."""
    text = (REPO / "docs" / "training.md").read_text()
    table = text[text.index("### Config groups"):]
    rows = dict(re.findall(r"^\| `([\w/]+)` \| (.*) \|$", table, re.M))
    groups = {str(p.parent.relative_to(CONF_DIR)) for p in CONF_DIR.rglob("*.yaml")
              if p.parent != CONF_DIR}
    assert sorted(groups - {"local"}) == sorted(set(rows) - {"local"})
    for group in groups:
        options = {p.stem for p in (CONF_DIR / group).glob("*.yaml")}
        named = set(re.findall(r"`([\w-]+)`", rows[group]))
        assert options <= named, f"{group}: {sorted(options - named)} missing"
