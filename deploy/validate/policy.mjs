#!/usr/bin/env node
// What deploy/k8s promises, checked on its rendered output (validate.mjs checks the schema; this
// checks the decisions of issue 7 that a schema cannot know):
//
//   node policy.mjs RENDERED.yaml [--workers N] [--replication R]
//
//  - a coordinator StatefulSet of exactly one replica and a worker StatefulSet, each with a
//    PersistentVolumeClaim template for /var/lib/knn; the coordinator's Service; the workers'
//    headless Service (clusterIP None) named by their serviceName;
//  - every pod: runAsNonRoot with a non-zero UID, seccomp RuntimeDefault, no service account
//    token; every container: read-only root filesystem, no privilege escalation, capabilities
//    drop ALL, CPU and memory requests and limits, a pinned image (no latest), liveness on
//    /healthz and readiness on /readyz over HTTP on port 8080;
//  - a PodDisruptionBudget covering the workers;
//  - NetworkPolicies: the workers' gRPC port 7001 only from the coordinator's pods, port 8080 of
//    both only from namespaces labelled knncluster.io/monitoring=true;
//  - with --workers N / --replication R: the worker count and the coordinator's --replication
//    (through the knn-config ConfigMap).
// Prints `FILE: what: problem` per failure; exit 1 if any.
import fs from "node:fs";
import yaml from "js-yaml";

const args = process.argv.slice(2);
const file = args.shift();
const opts = {};
while (args.length) {
  const flag = args.shift();
  if (flag === "--workers") opts.workers = Number(args.shift());
  else if (flag === "--replication") opts.replication = String(args.shift());
  else {
    process.stderr.write(`policy: unknown option ${flag}\n`);
    process.exit(2);
  }
}
if (!file) {
  process.stderr.write("usage: policy.mjs RENDERED.yaml [--workers N] [--replication R]\n");
  process.exit(2);
}

const docs = yaml.loadAll(fs.readFileSync(file, "utf8")).filter(Boolean);
let problems = 0;
const fail = (what, msg) => {
  console.log(`${file}: ${what}: ${msg}`);
  problems++;
};
const find = (kind, name) => docs.find((d) => d.kind === kind && d.metadata && d.metadata.name === name);
const byKind = (kind) => docs.filter((d) => d.kind === kind);
const component = (c) => ({ "app.kubernetes.io/name": "knncluster", "app.kubernetes.io/component": c });
const selects = (selector, labels) =>
  selector && Object.entries(selector).every(([k, v]) => labels[k] === v);

const coordinator = find("StatefulSet", "knn-coordinator");
const worker = find("StatefulSet", "knn-worker");
if (!coordinator) fail("StatefulSet/knn-coordinator", "missing");
if (!worker) fail("StatefulSet/knn-worker", "missing");
if (coordinator && coordinator.spec.replicas !== 1) {
  fail("StatefulSet/knn-coordinator", `replicas is ${coordinator.spec.replicas}, must be 1 (one coordinator per data directory)`);
}
if (worker && opts.workers !== undefined && worker.spec.replicas !== opts.workers) {
  fail("StatefulSet/knn-worker", `replicas is ${worker.spec.replicas}, expected ${opts.workers}`);
}

const portOf = (container, port) => {
  if (typeof port === "number") return port;
  const p = (container.ports || []).find((x) => x.name === port);
  return p ? p.containerPort : undefined;
};

for (const sts of [coordinator, worker].filter(Boolean)) {
  const what = `StatefulSet/${sts.metadata.name}`;
  const svc = find("Service", sts.spec.serviceName);
  if (!svc) fail(what, `serviceName ${sts.spec.serviceName} is not a Service of the set`);
  if (sts === worker && svc && svc.spec.clusterIP !== "None") fail(what, "the workers' Service is not headless");
  const claims = (sts.spec.volumeClaimTemplates || []).map((c) => c.metadata.name);
  const pod = sts.spec.template.spec;
  const psc = pod.securityContext || {};
  if (psc.runAsNonRoot !== true) fail(what, "pod securityContext.runAsNonRoot is not true");
  if (!(psc.runAsUser > 0)) fail(what, "pod securityContext.runAsUser is not a non-zero UID");
  if (!psc.seccompProfile || psc.seccompProfile.type !== "RuntimeDefault") fail(what, "seccompProfile is not RuntimeDefault");
  if (pod.automountServiceAccountToken !== false) fail(what, "the service account token is mounted");
  for (const c of pod.containers) {
    const cw = `${what} container ${c.name}`;
    const sc = c.securityContext || {};
    if (sc.readOnlyRootFilesystem !== true) fail(cw, "root filesystem is not read-only");
    if (sc.allowPrivilegeEscalation !== false) fail(cw, "allowPrivilegeEscalation is not false");
    if (!(sc.capabilities && (sc.capabilities.drop || []).includes("ALL"))) fail(cw, "capabilities do not drop ALL");
    for (const kind of ["requests", "limits"]) {
      for (const r of ["cpu", "memory"]) {
        if (!(c.resources && c.resources[kind] && c.resources[kind][r] !== undefined)) fail(cw, `no ${r} ${kind}`);
      }
    }
    const image = String(c.image || "");
    if (!/:[^/]+$/.test(image) || image.endsWith(":latest")) fail(cw, `image ${image} is not pinned to a tag`);
    for (const [probe, path] of [["livenessProbe", "/healthz"], ["readinessProbe", "/readyz"]]) {
      const h = c[probe] && c[probe].httpGet;
      if (!h) fail(cw, `no HTTP ${probe}`);
      else if (h.path !== path || portOf(c, h.port) !== 8080 || (h.scheme && h.scheme !== "HTTP")) {
        fail(cw, `${probe} is not plain HTTP GET ${path} on port 8080`);
      }
    }
    const dataMount = (c.volumeMounts || []).find((m) => m.mountPath === "/var/lib/knn");
    if (!dataMount || !claims.includes(dataMount.name)) {
      fail(cw, "/var/lib/knn is not on a PersistentVolumeClaim template");
    }
    if (!(c.args || []).includes("--data-dir=/var/lib/knn")) fail(cw, "--data-dir is not /var/lib/knn");
  }
}

if (coordinator) {
  const c = coordinator.spec.template.spec.containers[0];
  if (!(c.args || []).includes("--replication=$(KNN_REPLICATION)")) {
    fail("StatefulSet/knn-coordinator", "--replication does not come from KNN_REPLICATION");
  }
  if (opts.replication !== undefined) {
    const cms = byKind("ConfigMap").filter((cm) => cm.metadata.name.startsWith("knn-config"));
    const ref = (c.envFrom || []).map((e) => e.configMapRef && e.configMapRef.name).find(Boolean);
    const cm = cms.find((x) => x.metadata.name === ref);
    if (!cm) fail("StatefulSet/knn-coordinator", `envFrom ConfigMap ${ref} is not in the set`);
    else if ((cm.data || {}).KNN_REPLICATION !== opts.replication) {
      fail(`ConfigMap/${cm.metadata.name}`, `KNN_REPLICATION is ${JSON.stringify((cm.data || {}).KNN_REPLICATION)}, expected "${opts.replication}"`);
    }
  }
}

const pdbs = byKind("PodDisruptionBudget").filter((p) => selects(p.spec.selector && p.spec.selector.matchLabels, component("worker")));
if (pdbs.length === 0) fail("PodDisruptionBudget", "none covers the workers");
for (const p of pdbs) {
  if (p.spec.maxUnavailable !== 1) fail(`PodDisruptionBudget/${p.metadata.name}`, "maxUnavailable is not 1");
}

// NetworkPolicies: for each component, which peers may reach which port.
const policies = byKind("NetworkPolicy");
const monitoring = (peer) =>
  peer.namespaceSelector && !peer.podSelector &&
  (peer.namespaceSelector.matchLabels || {})["knncluster.io/monitoring"] === "true";
const fromCoordinator = (peer) =>
  !peer.namespaceSelector && peer.podSelector && selects(peer.podSelector.matchLabels, component("coordinator")) &&
  Object.keys(peer.podSelector.matchLabels).length === 2;
for (const [comp, grpcPort] of [["worker", 7001], ["coordinator", 7000]]) {
  const labels = component(comp);
  const mine = policies.filter((p) => selects(p.spec.podSelector.matchLabels || {}, labels) &&
                                      (p.spec.policyTypes || []).includes("Ingress"));
  const what = `NetworkPolicy for the ${comp} pods`;
  if (mine.length === 0) {
    fail(what, "none selects them");
    continue;
  }
  const rules = mine.flatMap((p) => p.spec.ingress || []);
  for (const rule of rules) {
    const ports = (rule.ports || []).map((p) => p.port);
    if (ports.length === 0) fail(what, "a rule allows every port");
    if (!rule.from || rule.from.length === 0) fail(what, "a rule allows every source");
    if (ports.includes(8080) && !(rule.from || []).every(monitoring)) {
      fail(what, "port 8080 is open to more than namespaces labelled knncluster.io/monitoring=true");
    }
    if (comp === "worker" && ports.includes(grpcPort) && !(rule.from || []).every(fromCoordinator)) {
      fail(what, "port 7001 is open to more than the coordinator's pods");
    }
  }
  for (const port of [grpcPort, 8080]) {
    if (!rules.some((r) => (r.ports || []).some((p) => p.port === port))) fail(what, `port ${port} is not reachable at all`);
  }
}

if (problems) {
  console.log(`policy: ${problems} problem(s)`);
  process.exit(1);
}
console.log(`policy: ${file}: ok`);
