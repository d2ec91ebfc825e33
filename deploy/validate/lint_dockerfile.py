#!/usr/bin/python3
"""A small Dockerfile lint for knncluster's image (there is no hadolint in Debian 12).

    lint_dockerfile.py Dockerfile [Dockerfile ...]

Prints `FILE:LINE: message` for each problem and exits 1 if there is any (0 if none, 2 on a usage
or read error). The rules are the house rules for deploy/Dockerfile:

  - multi-stage: at least two FROM stages, and the final stage copies from an earlier one
    (COPY --from=...);
  - every FROM names a Debian 12 image with an explicit tag (debian:12, debian:12-slim,
    debian:12.N[-slim], debian:bookworm[-slim|-YYYYMMDD...]) or an earlier stage; never `latest`
    or an untagged image;
  - the final stage switches to a non-root user with a numeric UID (Kubernetes' runAsNonRoot can
    only verify a numeric one), and no later instruction switches back;
  - no ADD of URLs or git repositories (and no ADD at all: COPY says what it does);
  - apt-get: `apt-get update` only in the same RUN as an install, installs with `-y` and
    `--no-install-recommends`, and the lists removed (`rm -rf /var/lib/apt/lists/*`) in that RUN;
    no `apt` (the interactive front end), no `apt-get upgrade`/`dist-upgrade`;
  - no `curl ... | sh`-style pipes into a shell, no sudo;
  - CMD and ENTRYPOINT in exec (JSON) form, so that signals reach the program;
  - EXPOSE ports are numbers 1-65535; no MAINTAINER (deprecated: use a LABEL).
"""

import json
import re
import sys

INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
    "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}
DEBIAN_TAG = re.compile(r"^(docker\.io/)?(library/)?debian:(12(\.\d+)?|bookworm)(-slim)?(-\d{8})?"
                        r"(@sha256:[0-9a-f]{64})?$")


def parse(text):
    """Yields (line number, INSTRUCTION, arguments) with continuations joined, comments dropped."""
    escape = "\\"
    lines = text.split("\n")
    i = 0
    at_start = True
    while i < len(lines):
        line = lines[i]
        start = i + 1
        stripped = line.strip()
        if at_start:
            directive = re.match(r"^#\s*escape\s*=\s*(\S)\s*$", stripped, re.I)
            if directive:
                escape = directive.group(1)
                i += 1
                continue
            if re.match(r"^#\s*\w+\s*=", stripped):
                i += 1
                continue
        if not stripped or stripped.startswith("#"):
            i += 1
            if stripped:
                at_start = False
            continue
        at_start = False
        parts = []
        while True:
            body = lines[i].rstrip()
            if body.endswith(escape):
                parts.append(body[:-1])
                i += 1
                # Comment lines and empty lines inside a continued instruction are skipped.
                while i < len(lines) and (not lines[i].strip() or lines[i].strip().startswith("#")):
                    i += 1
                if i >= len(lines):
                    break
            else:
                parts.append(body)
                i += 1
                break
        joined = " ".join(p.strip() for p in parts)
        word, _, rest = joined.partition(" ")
        yield start, word.upper(), rest.strip()


def shell_commands(run_args):
    """Splits a RUN's shell form into commands at &&, ||, ; and |."""
    return [c.strip() for c in re.split(r"&&|\|\||;|\|", run_args) if c.strip()]


def lint(path, text):
    problems = []

    def report(line, msg):
        problems.append(f"{path}:{line}: {msg}")

    stages = []  # dicts: line, image, name, user (line, value) entries, copies_from
    for line, instr, args in parse(text):
        if instr not in INSTRUCTIONS:
            report(line, f"unknown instruction {instr}")
            continue
        if instr == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            if not words:
                report(line, "FROM without an image")
                continue
            image = words[0]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            earlier = {s["name"] for s in stages if s["name"]}
            if image in earlier:
                pass
            elif "$" in image:
                report(line, f"FROM {image}: the base image must be written out, not an ARG")
            elif image.endswith(":latest") or ":" not in image.split("/")[-1]:
                report(line, f"FROM {image}: pin a tag (debian:12 or debian:12-slim), never latest")
            elif not DEBIAN_TAG.match(image):
                report(line, f"FROM {image}: base images are Debian 12 (debian:12, debian:12-slim)")
            stages.append({"line": line, "image": image, "name": name, "users": [],
                           "copies_from": False})
            continue
        if not stages:
            if instr != "ARG":
                report(line, f"{instr} before the first FROM")
            continue
        stage = stages[-1]
        if instr == "MAINTAINER":
            report(line, "MAINTAINER is deprecated: use LABEL org.opencontainers.image.authors")
        elif instr == "ADD":
            if re.search(r"(https?|ftp)://|git@|\.git(\s|$)", args):
                report(line, "ADD of a URL or git repository: fetch in a build stage with a "
                             "checksum, or COPY from the context")
            else:
                report(line, "ADD: use COPY (ADD also unpacks archives and fetches URLs)")
        elif instr == "COPY":
            if re.search(r"--from=", args):
                stage["copies_from"] = True
        elif instr == "USER":
            stage["users"].append((line, args.strip()))
        elif instr in ("CMD", "ENTRYPOINT"):
            try:
                value = json.loads(args)
                ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            except ValueError:
                ok = False
            if not ok:
                report(line, f"{instr} in shell form: use the exec form "
                             f'{instr} ["/path/program", "arg"] so that signals reach it')
        elif instr == "EXPOSE":
            for port in args.split():
                m = re.match(r"^(\d+)(/(tcp|udp))?$", port)
                if not m or not 1 <= int(m.group(1)) <= 65535:
                    report(line, f"EXPOSE {port}: not a port (1-65535[/tcp|/udp])")
        elif instr == "RUN":
            lint_run(line, args, report)

    if len(stages) < 2:
        report(stages[0]["line"] if stages else 1,
               "not multi-stage: build in one stage, copy the binaries into a slim final stage")
    if stages:
        final = stages[-1]
        if len(stages) >= 2 and not final["copies_from"]:
            report(final["line"], "the final stage copies nothing from the build stage "
                                  "(COPY --from=...)")
        if not final["users"]:
            report(final["line"], "the final stage runs as root: add USER <uid>:<gid> (non-zero)")
        else:
            line, user = final["users"][-1]
            uid = user.split(":")[0]
            if uid in ("0", "root"):
                report(line, f"USER {user}: the final stage must not run as root")
            elif not uid.isdigit():
                report(line, f"USER {user}: use a numeric UID (runAsNonRoot checks it)")
    return problems


def lint_run(line, args, report):
    if args.startswith("["):
        return  # exec form: no shell, nothing below applies
    commands = shell_commands(args)
    if re.search(r"\b(curl|wget)\b[^|]*\|\s*(ba|da|z)?sh\b", args):
        report(line, "piping a download into a shell: download, verify a checksum, then run")
    has_install = False
    for cmd in commands:
        words = [w for w in cmd.split() if not re.match(r"^[A-Z_]+=", w)]  # drop VAR=value
        if not words:
            continue
        if words[0] == "sudo":
            report(line, "sudo in RUN: build steps already run as the stage's user")
            words = words[1:]
        if not words:
            continue
        if words[0] == "apt":
            report(line, "apt is the interactive front end: use apt-get")
        if words[0] in ("apt-get", "apt"):
            sub = next((w for w in words[1:] if not w.startswith("-")), "")
            if sub in ("upgrade", "dist-upgrade"):
                report(line, f"apt-get {sub}: the base image's tag decides the versions")
            if sub == "install":
                has_install = True
                if not any(w in ("-y", "--yes", "-qy", "-yq", "--assume-yes") for w in words):
                    report(line, "apt-get install without -y")
                if "--no-install-recommends" not in words:
                    report(line, "apt-get install without --no-install-recommends")
    if re.search(r"\bapt-get\b.*\bupdate\b", args) and not has_install:
        report(line, "apt-get update without an install in the same RUN (a stale cache layer)")
    if has_install and "rm -rf /var/lib/apt/lists" not in args:
        report(line, "apt-get install without `rm -rf /var/lib/apt/lists/*` in the same RUN")


def main(argv):
    if not argv:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    problems = []
    for path in argv:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            print(f"{path}: cannot read: {e}", file=sys.stderr)
            return 2
        problems += lint(path, text)
    for p in problems:
        print(p)
    if problems:
        print(f"lint_dockerfile: {len(problems)} problem(s)")
        return 1
    print(f"lint_dockerfile: {len(argv)} file(s) clean")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
