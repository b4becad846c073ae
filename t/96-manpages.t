#!/usr/bin/python3
"""The manual pages against the programs they describe.

Each program prints every option and configuration key it accepts with
--list-options; each item must be documented:

  taskerd        in taskerd.8 or taskerd.conf.5
  tasker-worker  in tasker-worker.8
  tasker-cli     in tasker-cli.1 (only when tasker-cli is built)

An option counts as documented when it appears in the page's text; a key
"section.key" when the page names it so, or has a tagged paragraph (.TP)
"key = ..." under a subsection (.SS) "[section]". The other way round, every
key documented like that must be one the program accepts, so that a removed
key does not linger in the manual. The pages must also name the operator
variables, and groff (and man, when installed) must format them without a
warning.

How to document a new key: add a .TP entry under its section's .SS in
doc/taskerd.conf.5.in (runtime and taskerd keys) and/or doc/tasker-worker.8.in
(worker keys; the worker's page lists the runtime keys by full name).
"""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from harness import TOP_BUILDDIR, TOP_SRCDIR, Tap, program  # noqa: E402

tap = Tap()

PAGES = {
    "taskerd": ["taskerd.8", "taskerd.conf.5"],
    "tasker-worker": ["tasker-worker.8"],
    "tasker-cli": ["tasker-cli.1"],
}
OPERATOR_VARS = {
    "taskerd.8": ["DATABASE_URL", "TASKER_TEMPLATE_PATH", "TASKER_CONFIG",
                  "TASKER_ORCHESTRATION_GRPC_BIND_ADDRESS",
                  "TASKER_ORCHESTRATION_WEB_BIND_ADDRESS", "TASKER_WORKER_NAMESPACES",
                  "TASKER_WORKER_GRPC_BIND_ADDRESS", "TASKER_WORKER_WEB_BIND_ADDRESS",
                  "TASKER_SECTION_KEY"],
    "tasker-worker.8": ["DATABASE_URL", "TASKER_TEMPLATE_PATH", "TASKER_CONFIG",
                        "TASKER_WORKER_NAMESPACES", "TASKER_WORKER_GRPC_BIND_ADDRESS",
                        "TASKER_WORKER_WEB_BIND_ADDRESS",
                        "TASKER_ORCHESTRATION_GRPC_BIND_ADDRESS",
                        "TASKER_ORCHESTRATION_WEB_BIND_ADDRESS", "TASKER_SECTION_KEY"],
}
# Sections every page of a daemon has.
DAEMON_SECTIONS = ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "ENVIRONMENT", "SIGNALS",
                   "EXIT STATUS", "FILES", "SEE ALSO"]


# ----------------------------------------------------------------- roff
def page_path(name):
    """The formatted page in the build tree (paths substituted by make)."""
    return os.path.join(TOP_BUILDDIR, "doc", name)


def unescape(text):
    """roff escapes to plain text, enough to search for names in it."""
    text = re.sub(r"\\f(\[[^]]*\]|\(..|.)", "", text)  # font changes
    for esc, plain in ((r"\-", "-"), (r"\(aq", "'"), (r"\(lq", '"'), (r"\(rq", '"'),
                       (r"\(bu", "*"), (r"\e", "\\"), (r"\&", ""), (r"\~", " "),
                       (r"\ ", " "), (r"\c", "")):
        text = text.replace(esc, plain)
    return text


def macro_args(rest):
    """Arguments of a macro line: blank-separated, "double quoted" kept whole."""
    args = []
    for m in re.finditer(r'"((?:[^"]|"")*)"|(\S+)', rest):
        args.append(m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2))
    return args


ALTERNATING = {"BI", "BR", "IB", "IR", "RB", "RI"}


def parse(path):
    """Returns (text, tagged): the page as plain text, one roff line per line,
    and the "section.key" names of .TP/.TQ tags under .SS "[section]"."""
    lines, tagged = [], set()
    section, want_tag = None, False
    with open(path, encoding="utf-8") as f:
        raw = f.read().replace("\\\n", "")
    for line in raw.split("\n"):
        if line.startswith(".\\\"") or line.startswith("'\\\""):
            continue
        m = re.match(r"^\.(\w+)\s*(.*)$", line)
        if m:
            name, args = m.group(1), macro_args(m.group(2))
            if name in ALTERNATING:
                plain = "".join(args)
            else:
                plain = " ".join(args)
            if name == "SH":
                section = None
            elif name == "SS":
                sm = re.fullmatch(r"\[([a-z0-9_]+)\]", unescape(plain).strip())
                section = sm.group(1) if sm else None
            if name in ("TP", "TQ"):
                want_tag = True
                continue
        else:
            plain = line
        plain = unescape(plain)
        if want_tag:
            want_tag = False
            km = re.match(r"\s*([a-z0-9_]+)\s*(=|$)", plain)
            if section and km:
                tagged.add("%s.%s" % (section, km.group(1)))
        lines.append(plain)
    return "\n".join(lines), tagged


def mentions(text, item):
    """Is `item` (an option, a command, a "section.key") in the text as a whole word?"""
    return re.search(r"(?<![\w.-])%s(?![\w-])" % re.escape(item), text) is not None


def list_options(prog):
    r = subprocess.run([prog, "--list-options"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30, env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    if r.returncode != 0:
        raise RuntimeError("%s --list-options: exit %d: %s" % (
            prog, r.returncode, r.stderr.decode("utf-8", "replace")))
    return [line.strip() for line in r.stdout.decode().splitlines() if line.strip()]


# ----------------------------------------------------------------- checks
parsed = {}
for pages in PAGES.values():
    for p in pages:
        path = page_path(p)
        if tap.ok(os.path.isfile(path), "%s is built" % p, path):
            parsed[p] = parse(path)

for prog_name, pages in PAGES.items():
    try:
        prog = program(prog_name)
    except FileNotFoundError:
        tap.ok(True, "%s: not built # SKIP no program to check the page against" % prog_name)
        continue
    if not all(p in parsed for p in pages):
        continue
    try:
        items = list_options(prog)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        tap.ok(False, "%s --list-options works" % prog_name, e)
        continue
    tap.ok(len(items) > 0 and "--list-options" in items and "--help" in items,
           "%s --list-options lists its options" % prog_name, "\n".join(items))
    keys = [i for i in items if re.fullmatch(r"[a-z0-9_]+\.[a-z0-9_]+", i)]
    if prog_name != "tasker-cli":
        tap.ok(len(keys) > 0, "%s --list-options lists configuration keys" % prog_name)
    missing = []
    for item in items:
        if not any(item in parsed[p][1] or mentions(parsed[p][0], item) for p in pages):
            missing.append(item)
    tap.ok(not missing, "%s: every option and key is documented in %s (%d items)" % (
        prog_name, " or ".join(pages), len(items)),
        "not documented: " + ", ".join(missing))
    # Only sections the program lists can be judged: keys of a section it
    # does not enumerate ([auth] today) are documented without a check.
    listed = {k.split(".", 1)[0] for k in keys}
    stale = sorted(k for k in set().union(*(parsed[p][1] for p in pages)) - set(keys)
                   if k.split(".", 1)[0] in listed)
    tap.ok(not stale, "%s: every key documented in %s exists" % (prog_name, " or ".join(pages)),
           "documented but not accepted: " + ", ".join(stale))

for page, names in OPERATOR_VARS.items():
    if page not in parsed:
        continue
    text = parsed[page][0]
    missing = [v for v in names if not mentions(text, v)]
    tap.ok(not missing, "%s names the operator variables" % page, ", ".join(missing))
    missing = [s for s in DAEMON_SECTIONS if not re.search(r"^%s$" % s, text, re.M)]
    tap.ok(not missing, "%s has the sections of a daemon's page" % page, ", ".join(missing))
    tap.ok(mentions(text, "SIGTERM"), "%s documents SIGTERM" % page)

for page, (text, _) in sorted(parsed.items()):
    left = [line for line in text.splitlines() if re.search(r"@\w+@", line)]
    tap.ok(not left, "%s: every @dir@ is substituted" % page, "\n".join(left))

# ----------------------------------------------------------------- formatting
GROFF = shutil.which("groff")
MAN = shutil.which("man")
for page in sorted(parsed):
    path = page_path(page)
    if GROFF is None:
        tap.ok(True, "%s: groff warnings # SKIP groff not installed" % page)
    else:
        r = subprocess.run([GROFF, "-ww", "-z", "-b", "-man", "-Tutf8", path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        err = r.stderr.decode("utf-8", "replace").strip()
        tap.ok(r.returncode == 0 and err == "", "%s: groff -ww reports nothing" % page, err)
    if MAN is None:
        tap.ok(True, "%s: man --warnings # SKIP man not installed" % page)
    else:
        env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="", LC_ALL="C.UTF-8")
        r = subprocess.run([MAN, "--warnings", "-E", "UTF-8", "-l", path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, env=env)
        err = r.stderr.decode("utf-8", "replace").strip()
        out = r.stdout.decode("utf-8", "replace")
        tap.ok(r.returncode == 0 and err == "" and "NAME" in out,
               "%s: man --warnings reports nothing" % page, err)

tap.done()
