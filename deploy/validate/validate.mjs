#!/usr/bin/env node
// Offline validation of rendered Kubernetes manifests (the output of `kubectl kustomize DIR`).
//
//   node validate.mjs FILE.yaml [FILE.yaml ...]     (or `-` for standard input)
//
// For every object in every file:
//   1. schema: the object is validated with kubernetes-models (4.5.1: the Kubernetes 1.31 OpenAPI
//      schema compiled to ajv validators), picked by apiVersion and kind. This catches wrong types
//      (`replicas: "three"`), bad enums, missing required fields and bad formats.
//   2. unknown keys: kubernetes-models ignores keys its schema does not define (a misspelled
//      `contaners:` passes step 1), and it ships compiled validators, not the JSON schemas. So
//      every key of every object is probed against the same compiled schema: its value is
//      replaced by a value no schema type accepts (a Symbol) and the object validated again. A key
//      the schema defines -- a field, or an entry of a free-form map such as labels, annotations,
//      ConfigMap data or resource limits (additionalProperties), or an int-or-string -- then
//      fails at exactly its own path; a key the schema does not define passes silently, and is
//      reported. Nothing under an unknown key is probed further. This follows $ref,
//      additionalProperties and anyOf/oneOf exactly as the validator does, because it is the
//      validator.
//   3. consistency within the rendered set: unique kind/namespace/name; a workload's selector
//      matches its pod template's labels; a StatefulSet's serviceName names a Service of the set;
//      ConfigMaps and Secrets a pod refers to (envFrom, env valueFrom, volumes) exist in the set
//      unless marked optional; probes name a port the container declares; every $(VAR) in a
//      container's command, args and env values is defined by its env or envFrom.
//
// Each problem is printed as `FILE: Kind/name: /json/path: message`. Exit status: 0 when every
// object passes, 1 when any problem was found, 2 on usage or read errors.
import fs from "node:fs";
import yaml from "js-yaml";

// Fields whose schema accepts any value, where a probe cannot tell known from unknown. None of
// the kinds deploy/k8s renders has one at a path we write; listed so that a future kind with one
// (e.g. a CRD's preserve-unknown-fields) is not flagged by mistake. Matched against the JSON path
// with array indices replaced by `*`.
const FREE_FORM_PATHS = [/^\/metadata\/managedFields\/\*\/fieldsV1(\/|$)/];

const modelCache = new Map();

async function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string") return null;
  const key = `${apiVersion}/${kind}`;
  if (modelCache.has(key)) return modelCache.get(key);
  let model = null;
  try {
    const mod = await import(`kubernetes-models/${apiVersion}`);
    model = typeof mod[kind] === "function" ? mod[kind] : null;
  } catch {
    model = null;
  }
  modelCache.set(key, model);
  return model;
}

// ajv's instancePath: JSON pointer with `~` -> `~0` and `/` -> `~1`.
const escapeKey = (k) => String(k).replace(/~/g, "~0").replace(/\//g, "~1");

function schemaErrors(Model, doc) {
  try {
    new Model(doc).validate();
    return [];
  } catch (e) {
    if (Array.isArray(e.errors)) return e.errors;
    return [{ instancePath: "", message: String(e && e.message ? e.message : e) }];
  }
}

function describeAjvError(err) {
  const p = err.params || {};
  switch (err.keyword) {
    case "type":
      return `must be ${p.type}`;
    case "enum":
      return `must be one of ${JSON.stringify(p.allowedValues)}`;
    case "required":
      return `missing required field "${p.missingProperty}"`;
    case "format":
      return `must match format "${p.format}"`;
    default:
      return err.message || err.keyword || "invalid";
  }
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

// Step 2: returns the JSON paths of keys the schema does not define.
function unknownKeys(Model, doc) {
  const SENTINEL = Symbol("knn-probe");
  const found = [];
  const walk = (node, path, wildPath) => {
    if (Array.isArray(node)) {
      node.forEach((item, i) => walk(item, `${path}/${i}`, `${wildPath}/*`));
      return;
    }
    if (!isObject(node)) return;
    for (const key of Object.keys(node)) {
      const keyPath = `${path}/${escapeKey(key)}`;
      const keyWild = `${wildPath}/${escapeKey(key)}`;
      if (FREE_FORM_PATHS.some((re) => re.test(keyWild))) continue;
      const saved = node[key];
      node[key] = SENTINEL;
      let known;
      try {
        known = schemaErrors(Model, doc).some((e) => e.instancePath === keyPath);
      } finally {
        node[key] = saved;
      }
      if (!known) {
        found.push(keyPath);
        continue;  // do not report the children of an unknown key again
      }
      walk(saved, keyPath, keyWild);
    }
  };
  walk(doc, "", "");
  return found;
}

const POD_TEMPLATE_KINDS = new Set(["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"]);

// Step 3, per object: references it makes, checked once the whole set is read.
function podChecks(obj, report, refs) {
  const spec = obj.spec || {};
  const tmpl = obj.kind === "Pod" ? obj : spec.template;
  if (!isObject(tmpl)) return;
  const podSpec = tmpl.spec || {};
  const base = obj.kind === "Pod" ? "/spec" : "/spec/template/spec";
  if (obj.kind !== "Pod" && isObject(spec.selector) && isObject(spec.selector.matchLabels)) {
    const labels = (tmpl.metadata && tmpl.metadata.labels) || {};
    for (const [k, v] of Object.entries(spec.selector.matchLabels)) {
      if (labels[k] !== v) {
        report(`/spec/selector/matchLabels/${escapeKey(k)}`,
               `selector ${k}=${v} does not match the pod template's labels`);
      }
    }
  }
  if (obj.kind === "StatefulSet" && spec.serviceName) {
    refs.push({ kind: "Service", name: spec.serviceName, path: "/spec/serviceName", report });
  }
  const ref = (kind, name, optional, path) => {
    if (name && !optional) refs.push({ kind, name, path, report });
  };
  (podSpec.volumes || []).forEach((v, i) => {
    if (v.configMap) ref("ConfigMap", v.configMap.name, v.configMap.optional, `${base}/volumes/${i}/configMap/name`);
    if (v.secret) ref("Secret", v.secret.secretName, v.secret.optional, `${base}/volumes/${i}/secret/secretName`);
    if (v.projected) {
      (v.projected.sources || []).forEach((s, j) => {
        const p = `${base}/volumes/${i}/projected/sources/${j}`;
        if (s.configMap) ref("ConfigMap", s.configMap.name, s.configMap.optional, `${p}/configMap/name`);
        if (s.secret) ref("Secret", s.secret.name, s.secret.optional, `${p}/secret/name`);
      });
    }
  });
  const containers = [
    ...(podSpec.initContainers || []).map((c, i) => [c, `${base}/initContainers/${i}`]),
    ...(podSpec.containers || []).map((c, i) => [c, `${base}/containers/${i}`]),
  ];
  for (const [c, cPath] of containers) {
    (c.envFrom || []).forEach((e, i) => {
      if (e.configMapRef) ref("ConfigMap", e.configMapRef.name, e.configMapRef.optional, `${cPath}/envFrom/${i}/configMapRef/name`);
      if (e.secretRef) ref("Secret", e.secretRef.name, e.secretRef.optional, `${cPath}/envFrom/${i}/secretRef/name`);
    });
    (c.env || []).forEach((e, i) => {
      const vf = e.valueFrom || {};
      if (vf.configMapKeyRef) ref("ConfigMap", vf.configMapKeyRef.name, vf.configMapKeyRef.optional, `${cPath}/env/${i}/valueFrom/configMapKeyRef/name`);
      if (vf.secretKeyRef) ref("Secret", vf.secretKeyRef.name, vf.secretKeyRef.optional, `${cPath}/env/${i}/valueFrom/secretKeyRef/name`);
    });
    // $(VAR) in command, args and env values: Kubernetes expands it from the container's env and
    // envFrom, and leaves a misspelled one as literal text (a flag value "$(KNN_REPLICATON)").
    const used = [...(c.command || []), ...(c.args || []), ...(c.env || []).map((e) => e.value || "")]
      .flatMap((v) => [...String(v).matchAll(/(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)].map((m) => m[1]));
    if (used.length) {
      const defined = new Set((c.env || []).map((e) => e.name));
      const sources = (c.envFrom || []).map((e) => ({
        kind: e.configMapRef ? "ConfigMap" : "Secret",
        name: (e.configMapRef || e.secretRef || {}).name,
        prefix: e.prefix || "",
      }));
      refs.push({
        deferred: (objects) => {
          for (const src of sources) {
            const o = objects.find((x) => x.kind === src.kind && x.metadata && x.metadata.name === src.name);
            for (const k of Object.keys((o && (o.data || o.stringData)) || {})) defined.add(src.prefix + k);
          }
          for (const v of new Set(used)) {
            if (!defined.has(v)) report(cPath, `$(${v}) is not defined by the container's env or envFrom`);
          }
        },
      });
    }
    const ports = new Set();
    for (const p of c.ports || []) {
      ports.add(p.containerPort);
      if (p.name) ports.add(p.name);
    }
    for (const probe of ["livenessProbe", "readinessProbe", "startupProbe"]) {
      const pr = c[probe];
      if (!isObject(pr)) continue;
      const action = pr.httpGet || pr.tcpSocket || pr.grpc;
      if (action && action.port !== undefined && !ports.has(action.port)) {
        report(`${cPath}/${probe}`, `probe port ${JSON.stringify(action.port)} is not a port of container "${c.name}"`);
      }
    }
  }
}

async function main(argv) {
  if (argv.length === 0) {
    process.stderr.write("usage: validate.mjs FILE.yaml [FILE.yaml ...] (- for stdin)\n");
    return 2;
  }
  let problems = 0;
  let objects = 0;
  for (const file of argv) {
    let text;
    try {
      text = fs.readFileSync(file === "-" ? 0 : file, "utf8");
    } catch (e) {
      process.stderr.write(`${file}: cannot read: ${e.message}\n`);
      return 2;
    }
    let docs;
    try {
      docs = yaml.loadAll(text);
    } catch (e) {
      console.log(`${file}: YAML: ${e.message.split("\n")[0]}`);
      problems++;
      continue;
    }
    const seen = new Map();
    const refs = [];
    for (const [index, doc] of docs.entries()) {
      if (doc === null || doc === undefined) continue;
      objects++;
      const name = isObject(doc) && isObject(doc.metadata) ? doc.metadata.name : undefined;
      const label = `${isObject(doc) ? doc.kind : "?"}/${name ?? `#${index}`}`;
      const report = (path, msg) => {
        console.log(`${file}: ${label}: ${path || "/"}: ${msg}`);
        problems++;
      };
      if (!isObject(doc)) {
        report("", "not a mapping");
        continue;
      }
      // kustomize wraps a Secret's base64 values over lines (a YAML literal block); the API server
      // decodes them with Go's base64, which skips \r and \n, while the schema's "byte" format
      // does not. Compare what the server compares.
      if (doc.kind === "Secret" && isObject(doc.data)) {
        for (const [k, v] of Object.entries(doc.data)) {
          if (typeof v === "string") doc.data[k] = v.replace(/[\r\n]/g, "");
        }
      }
      const Model = await modelFor(doc.apiVersion, doc.kind);
      if (!Model) {
        report("", `no schema for apiVersion ${JSON.stringify(doc.apiVersion)} kind ${JSON.stringify(doc.kind)}`);
        continue;
      }
      if (!name) report("/metadata/name", "missing");
      const id = `${doc.kind}/${(doc.metadata && doc.metadata.namespace) || ""}/${name}`;
      if (seen.has(id)) report("/metadata/name", `duplicate ${doc.kind} "${name}"`);
      seen.set(id, true);
      for (const err of schemaErrors(Model, doc)) report(err.instancePath, describeAjvError(err));
      for (const path of unknownKeys(Model, doc)) {
        report(path, `unknown field "${path.split("/").pop()}" (not in the ${doc.apiVersion} ${doc.kind} schema)`);
      }
      if (POD_TEMPLATE_KINDS.has(doc.kind) || doc.kind === "Pod") podChecks(doc, report, refs);
    }
    const inSet = docs.filter(isObject);
    for (const r of refs) {
      if (r.deferred) {
        r.deferred(inSet);
        continue;
      }
      if (![...seen.keys()].some((id) => id.startsWith(`${r.kind}/`) && id.endsWith(`/${r.name}`))) {
        r.report(r.path, `refers to ${r.kind} "${r.name}", which is not in the rendered set`);
      }
    }
  }
  if (problems) {
    console.log(`validate: ${problems} problem(s) in ${objects} object(s)`);
    return 1;
  }
  console.log(`validate: ${objects} object(s) valid`);
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
