// Evaluate remit's Casbin export with node-casbin, independently of remit's Python code.
//
//   node check.mjs [--prefix DIR] [--per-decision] MODEL_CONF POLICY_CSV \
//       < requests.jsonl > answers.jsonl
//
// --prefix: the npm prefix the casbin package was installed into (scripts/test uses
// .tools); without it, `casbin` is resolved as usual from this script's folder.
// --per-decision: one enforcer per decision, loaded from the model and the policy's g lines
// and that decision's p lines (the matcher's first term, r.decision == p.decision, makes
// every other p line irrelevant, and node-casbin's priority sort is stable, so the answers
// are the same; a whole-file scan per request is what makes the default slow). The lines
// are split here, not by node-casbin's DefaultFilteredAdapter: in 5.51.1 its filterWords
// compares the filter with itself, so a filter on the decision drops every p line.
// Each request line: {"decision", "role", "area", "ctx"} (ctx: the typed context, role
// sets as lists), optionally "id". Each answer line, in the same order:
// {"id", "effect": "allow"|"deny", "rule": the deciding line's rule id or ""} from
// enforceEx (priority effect: the first matching line in priority order decides; none
// is a deny), or {"id", "error"} when the request could not be evaluated.
// Casbin's request log stays off (requests carry facts about a child).

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { cond } from './cond.mjs';

const RULE = 6; // p = decision, role, area, cond, eft, priority, rule

function usage(message) {
  process.stderr.write(`check.mjs: ${message}\nusage: node check.mjs [--prefix DIR] MODEL_CONF POLICY_CSV\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
let prefix = null;
let perDecision = false;
while (args[0]?.startsWith('--')) {
  const flag = args.shift();
  if (flag === '--prefix') {
    prefix = args.shift();
    if (!prefix) usage('--prefix needs a folder');
  } else if (flag === '--per-decision') {
    perDecision = true;
  } else {
    usage(`unknown option ${flag}`);
  }
}
if (args.length !== 2) usage('expected a model and a policy file');
const [modelPath, policyPath] = args;

const require = createRequire(prefix ? path.resolve(prefix, 'package.json') : import.meta.url);
const casbin = require('casbin');

async function enforcerFor(policy) {
  const e = await casbin.newEnforcer(modelPath, policy, false);
  e.enableLog(false);
  await e.addFunction('cond', cond);
  if (e.enabled !== true) usage('the enforcer is disabled (a disabled enforcer allows everything)');
  return e;
}

// the whole file is always loaded once, so a file node-casbin cannot read fails here
const whole = await enforcerFor(policyPath);
const byDecision = new Map();
let policyLines = null;

async function enforcer(decision) {
  if (!perDecision) return whole;
  let e = byDecision.get(decision);
  if (e === undefined) {
    policyLines ??= readFileSync(policyPath, 'utf8').split('\n');
    const own = policyLines.filter((line) => {
      const fields = line.split(',');
      return fields[0].trim() !== 'p' || fields[1]?.trim() === decision;
    });
    e = await enforcerFor(new casbin.StringAdapter(own.join('\n')));
    byDecision.set(decision, e);
  }
  return e;
}

const out = [];
const flush = () => {
  if (out.length) process.stdout.write(out.join(''));
  out.length = 0;
};
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (line.trim() === '') continue;
  let id = null;
  try {
    const req = JSON.parse(line);
    id = req.id ?? null;
    for (const key of ['decision', 'role', 'area']) {
      if (typeof req[key] !== 'string') throw new Error(`${key}: expected a string`);
    }
    if (req.ctx === null || typeof req.ctx !== 'object' || Array.isArray(req.ctx)) {
      throw new Error('ctx: expected an object');
    }
    const e = await enforcer(req.decision);
    const result = await e.enforceEx(req.decision, req.role, req.area, req.ctx);
    if (!Array.isArray(result)) throw new Error('enforceEx gave no explanation (disabled enforcer?)');
    const [allowed, explain] = result;
    const rule = explain.length ? explain[RULE] : '';
    out.push(JSON.stringify({ id, effect: allowed === true ? 'allow' : 'deny', rule }) + '\n');
  } catch (err) {
    out.push(JSON.stringify({ id, error: String(err?.message ?? err) }) + '\n');
  }
  if (out.length >= 1000) flush();
}
flush();
