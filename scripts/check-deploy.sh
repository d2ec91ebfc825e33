#!/usr/bin/env bash
# Offline checks of deploy/ (ctest `deploy_check`, label deploy; see deploy/README.md):
#   1. renders deploy/k8s/base and deploy/k8s/overlays/production with `kubectl kustomize`
#      (secrets/ filled with scripts/make-certs.sh output, or placeholders without it);
#   2. validates every rendered object against the Kubernetes 1.31 schema and rejects keys the
#      schema does not define (deploy/validate/validate.mjs), then checks the deployment's
#      promises (policy.mjs: non-root, read-only, probes on 8080, PVCs, PDB, NetworkPolicies,
#      4 workers and replication 2 in the overlay);
#   3. renders each broken fixture (deploy/validate/fixtures/*.yaml) the same way and requires
#      the validator to reject it with every message its `# expect:` lines name; valid.yaml passes;
#   4. checks deploy/compose.yaml (+ compose.tls.yaml) against the compose specification's schema,
#      and rejects fixtures/compose-broken.yaml;
#   5. lints deploy/Dockerfile (lint_dockerfile.py) and rejects fixtures/Dockerfile.*.
# Needs kubectl (kustomize), node >= 20 with npm (packages: deploy/validate/package-lock.json,
# installed with `npm ci` unless node_modules is already there) and /usr/bin/python3. Without
# kubectl or node it exits 77 (ctest: skipped), except under CI=true, where it fails.
# Building the image and applying the manifests are not tested: no container engine, no cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
val=deploy/validate

missing() {
  if [[ "${CI:-}" == "true" ]]; then
    echo "check-deploy: FAILED: $* (required under CI)" >&2
    exit 1
  fi
  echo "check-deploy: SKIPPED: $*" >&2
  exit 77
}
command -v kubectl > /dev/null || missing "kubectl not found (kubectl kustomize renders the manifests)"
command -v node > /dev/null || missing "node not found (the manifest validator is a node script)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[[ $node_major -ge 20 ]] || missing "node $node_major is too old (need >= 20)"

# The validator's packages: npm ci from the lock file, unless already installed at those versions.
if ! node -e '
  const lock = require("./'$val'/package-lock.json").packages;
  for (const [p, v] of Object.entries(lock)) {
    if (!p.startsWith("node_modules/") || v.optional) continue;
    const got = require("./'$val'/" + p + "/package.json").version;
    if (got !== v.version) process.exit(1);
  }' 2> /dev/null; then
  command -v npm > /dev/null || missing "npm not found (installs $val/node_modules)"
  echo "check-deploy: npm ci in $val"
  (cd "$val" && npm ci --no-audit --no-fund --loglevel=error) ||
    missing "npm ci failed in $val (no registry?)"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/knn-check-deploy.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "check-deploy: FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "check-deploy: ok: $*"; }
# kubectl must not look for a cluster: kustomize is offline.
kustomize() { KUBECONFIG=/dev/null kubectl kustomize "$@"; }

# expect_rejected VALIDATOR_OUTPUT FIXTURE: every `# expect: TEXT` line of FIXTURE is in the output.
expect_messages() {
  local out=$1 fixture=$2 ok=1 line
  while IFS= read -r line; do
    if ! grep -qF -- "$line" "$out"; then
      fail "$fixture: expected a problem containing: $line"
      ok=0
    fi
  done < <(sed -n 's/^# expect: //p' "$fixture")
  [[ $(grep -c '^# expect: ' "$fixture") -gt 0 ]] || { fail "$fixture has no '# expect:' line"; ok=0; }
  return $((1 - ok))
}

# 1 + 2: the real manifests. secrets/ gets test certificates (make-certs.sh, when this tree has it)
# or placeholders: the validator checks structure, not PEM contents.
cp -r deploy/k8s "$tmp/k8s"
secrets=$tmp/k8s/base/secrets
if [[ -x scripts/make-certs.sh ]] && command -v openssl > /dev/null; then
  scripts/make-certs.sh "$tmp/certs" --workers 1 \
    --san 'DNS:*.knn-worker.knncluster.svc.cluster.local,DNS:knn-coordinator.knncluster.svc.cluster.local' \
    2> /dev/null
  cp "$tmp/certs/ca.pem" "$tmp/certs/coordinator.pem" "$tmp/certs/coordinator-key.pem" "$secrets/"
  cp "$tmp/certs/worker-1.pem" "$secrets/worker.pem"
  cp "$tmp/certs/worker-1-key.pem" "$secrets/worker-key.pem"
else
  for f in ca.pem coordinator.pem coordinator-key.pem worker.pem worker-key.pem; do
    echo "placeholder $f (check-deploy.sh)" > "$secrets/$f"
  done
fi
head -c 24 /dev/urandom | base64 > "$secrets/token"

render_and_check() {  # NAME DIR POLICY-ARGS...
  local name=$1 dir=$2; shift 2
  if ! kustomize "$dir" > "$tmp/$name.yaml" 2> "$tmp/$name.err"; then
    fail "kubectl kustomize $dir: $(cat "$tmp/$name.err")"
    return
  fi
  if node "$val/validate.mjs" "$tmp/$name.yaml" > "$tmp/$name.out" 2>&1; then
    pass "$name: $(tail -n 1 "$tmp/$name.out")"
  else
    cat "$tmp/$name.out" >&2
    fail "$name: the rendered manifests do not validate"
  fi
  if node "$val/policy.mjs" "$tmp/$name.yaml" "$@" > "$tmp/$name.policy" 2>&1; then
    pass "$name: deployment policy ($*)"
  else
    cat "$tmp/$name.policy" >&2
    fail "$name: deployment policy"
  fi
}
render_and_check base "$tmp/k8s/base" --workers 3 --replication 1
render_and_check production "$tmp/k8s/overlays/production" --workers 4 --replication 2

# 3: broken fixtures, through the same kustomize + validate path.
for fixture in "$val"/fixtures/*.yaml; do
  name=$(basename "$fixture" .yaml)
  [[ $name == compose-* ]] && continue
  mkdir -p "$tmp/fixtures/$name"
  cp "$fixture" "$tmp/fixtures/$name/manifest.yaml"
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - manifest.yaml\n' \
    > "$tmp/fixtures/$name/kustomization.yaml"
  if ! kustomize "$tmp/fixtures/$name" > "$tmp/fixtures/$name.yaml" 2> "$tmp/fixtures/$name.err"; then
    fail "fixture $name: kubectl kustomize failed: $(cat "$tmp/fixtures/$name.err")"
    continue
  fi
  rc=0
  node "$val/validate.mjs" "$tmp/fixtures/$name.yaml" > "$tmp/fixtures/$name.out" 2>&1 || rc=$?
  if [[ $name == valid ]]; then
    [[ $rc -eq 0 ]] && pass "fixture valid.yaml passes" ||
      { cat "$tmp/fixtures/$name.out" >&2; fail "fixture valid.yaml is rejected (exit $rc)"; }
  elif [[ $rc -ne 1 ]]; then
    cat "$tmp/fixtures/$name.out" >&2
    fail "fixture $name.yaml: validate.mjs exit $rc, expected 1 (rejected)"
  elif expect_messages "$tmp/fixtures/$name.out" "$fixture"; then
    pass "fixture $name.yaml rejected: $(grep -v '^validate:' "$tmp/fixtures/$name.out" | sed 's/^[^:]*: //' | paste -sd';' -)"
  fi
done

# 4: compose.
if node "$val/validate_compose.mjs" deploy/compose.yaml deploy/compose.tls.yaml > "$tmp/compose.out" 2>&1; then
  pass "compose: $(tail -n 1 "$tmp/compose.out")"
else
  cat "$tmp/compose.out" >&2
  fail "deploy/compose.yaml does not validate"
fi
rc=0
node "$val/validate_compose.mjs" "$val/fixtures/compose-broken.yaml" > "$tmp/compose-broken.out" 2>&1 || rc=$?
if [[ $rc -ne 1 ]]; then
  cat "$tmp/compose-broken.out" >&2
  fail "fixture compose-broken.yaml: exit $rc, expected 1 (rejected)"
elif expect_messages "$tmp/compose-broken.out" "$val/fixtures/compose-broken.yaml"; then
  pass "fixture compose-broken.yaml rejected"
fi

# 5: the Dockerfile lint.
if /usr/bin/python3 "$val/lint_dockerfile.py" deploy/Dockerfile > "$tmp/lint.out" 2>&1; then
  pass "deploy/Dockerfile: $(tail -n 1 "$tmp/lint.out")"
else
  cat "$tmp/lint.out" >&2
  fail "deploy/Dockerfile does not pass the lint"
fi
for fixture in "$val"/fixtures/Dockerfile.*; do
  rc=0
  /usr/bin/python3 "$val/lint_dockerfile.py" "$fixture" > "$tmp/lint-fixture.out" 2>&1 || rc=$?
  if [[ $rc -ne 1 ]]; then
    cat "$tmp/lint-fixture.out" >&2
    fail "fixture $(basename "$fixture"): lint exit $rc, expected 1 (rejected)"
  elif expect_messages "$tmp/lint-fixture.out" "$fixture"; then
    pass "fixture $(basename "$fixture") rejected ($(tail -n 1 "$tmp/lint-fixture.out"))"
  fi
done

cd "$root"
if [[ $failures -gt 0 ]]; then
  echo "check-deploy: $failures check(s) failed" >&2
  exit 1
fi
echo "check-deploy: all checks passed (image build and kubectl apply are not tested here: no container engine, no cluster)"
