#!/usr/bin/env node
// couch-shim.js: a CouchDB 3.x compatible HTTP server for tests.
//
// It runs express-pouchdb (PouchDB 7.3.1, LevelDB on disk or in memory) and
// fixes the places where express-pouchdb differs from CouchDB 3.x in ways
// that matter to CouchDB clients (see README.md for the list).
//
// Usage:
//   node couch-shim.js --host 127.0.0.1 --port PORT --dir DIR
//                      [--in-memory] [--admin user:password] [--log FILE]
//
// When the server is ready it prints exactly one line to stdout:
//   couch-shim listening on http://HOST:PORT
'use strict';

const path = require('path');
const fs = require('fs');
const os = require('os');
const util = require('util');
const crypto = require('crypto');
const Module = require('module');

// Keep stdout for the single "listening" line: anything that libraries
// print goes to stderr.
const toStderr = (...args) => process.stderr.write(util.format(...args) + '\n');
console.log = console.info = console.warn = console.debug = toStderr;

// ---------------------------------------------------------------- arguments

function usage(code) {
  process.stderr.write(
    'usage: node couch-shim.js [--host 127.0.0.1] [--port 5984] --dir DIR\n' +
    '                          [--in-memory] [--admin user:password] [--log FILE]\n' +
    '  --port 0 picks a free port. Without --admin the server is an "admin party".\n');
  process.exit(code);
}

function parseArgs(argv) {
  const opts = { host: '127.0.0.1', port: 5984, dir: null, inMemory: false, admin: null, log: null };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value = null;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const next = () => {
      if (value !== null) return value;
      if (i + 1 >= argv.length) {
        process.stderr.write(`couch-shim: ${arg} needs a value\n`);
        usage(2);
      }
      return argv[++i];
    };
    switch (arg) {
      case '--host': case '-o': opts.host = next(); break;
      case '--port': case '-p': opts.port = Number(next()); break;
      case '--dir': case '-d': opts.dir = next(); break;
      case '--in-memory': case '-m': opts.inMemory = true; break;
      case '--admin': opts.admin = next(); break;
      case '--log': opts.log = next(); break;
      case '--help': case '-h': usage(0); break;
      default:
        process.stderr.write(`couch-shim: unknown argument ${arg}\n`);
        usage(2);
    }
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    process.stderr.write('couch-shim: --port must be an integer between 0 and 65535\n');
    usage(2);
  }
  if (opts.admin !== null) {
    const colon = opts.admin.indexOf(':');
    if (colon <= 0) {
      process.stderr.write('couch-shim: --admin must be user:password\n');
      usage(2);
    }
    opts.admin = { name: opts.admin.slice(0, colon), password: opts.admin.slice(colon + 1) };
  }
  if (!opts.dir) {
    opts.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'couch-shim-'));
    process.stderr.write(`couch-shim: no --dir given, using ${opts.dir}\n`);
  }
  opts.dir = path.resolve(opts.dir);
  return opts;
}

const args = parseArgs(process.argv.slice(2));
fs.mkdirSync(args.dir, { recursive: true });

// ------------------------------------------- module replacements (fixes 1, 3+)

function replaceModule(request, exportsValue) {
  const file = require.resolve(request);
  const m = new Module(file, module);
  m.filename = file;
  m.loaded = true;
  m.exports = exportsValue;
  require.cache[file] = m;
}

// Fix 1: express-pouchdb runs every db name through sanitize-filename, which
// strips '/'. CouchDB keeps it, so the name is used as it is (names are
// validated on PUT, see fix 5). On disk, 'a/b' becomes nested directories.
replaceModule('express-pouchdb/lib/clean-filename', (name) => name);

// CouchDB's server-generated ids (POST /db, /_uuids) are 32 lowercase hex.
function hexId() {
  return crypto.randomBytes(16).toString('hex');
}
replaceModule('express-pouchdb/lib/uuids', (count) => {
  const out = [];
  for (let i = 0; i < count; i++) out.push(hexId());
  return out;
});

// The shim's own routes are registered inside express-pouchdb, right where
// routes/root.js is loaded: after authentication (so wrong credentials are
// still refused with 401) and before every other route.
const originalRoot = require('express-pouchdb/lib/routes/root');
replaceModule('express-pouchdb/lib/routes/root', (app) => {
  installShimRoutes(app);
  originalRoot(app);
});

const express = require('express');
const expressPouchDB = require('express-pouchdb');
const utils = require('express-pouchdb/lib/utils');
const { getOrCreateDB } = require('express-pouchdb/lib/create-or-delete-dbs');

// CouchDB's reason for a missing database, and a CouchDB-style ETag on docs.
const originalSendJSON = utils.sendJSON;
utils.sendJSON = function (res, status, body) {
  if (status === 404 && body && body.reason === 'no_db_file') {
    body = { error: 'not_found', reason: 'Database does not exist.' };
  }
  if (status === 200 && body && typeof body._rev === 'string' && typeof body._id === 'string' &&
      res.req && (res.req.method === 'GET' || res.req.method === 'HEAD')) {
    res.set('ETag', '"' + body._rev + '"');
  }
  return originalSendJSON(res, status, body);
};

// ------------------------------------------------------------------ helpers

const VERSION = '3.3.3';
const DB_NAME_RE = /^[a-z][a-z0-9_$()+/-]*$/;
const SYSTEM_DBS = new Set(['_users', '_replicator', '_global_changes']);
const HIDDEN_DBS = new Set(['pouch__auth_sessions__', 'pouch__all_dbs__']);

function isDbName(name) {
  // Route parameters that look like '_something' are server endpoints
  // (/_session, /_config, ...), not databases, unless a system db.
  return typeof name === 'string' && name.length > 0 && (name[0] !== '_' || SYSTEM_DBS.has(name));
}

function validDbName(name) {
  return SYSTEM_DBS.has(name) || (name.length <= 238 && DB_NAME_RE.test(name));
}

function sendJSON(res, status, body) {
  utils.sendJSON(res, status, body);
}

function sendError(res, err, baseStatus) {
  utils.sendError(res, err, baseStatus);
}

function isAdmin(req) {
  const s = req.couchSession;
  return !!(s && s.userCtx && Array.isArray(s.userCtx.roles) && s.userCtx.roles.indexOf('_admin') !== -1);
}

// Bench support (cozyform-bench). express-pouchdb asks the registry for the whole list of database
// names on every request (O(number of databases)); the shim caches it, sorted, and drops the cache
// whenever a database is created or deleted. `POST /_cozyform_bench/register_dbs {"names": [...]}`
// (admin only) lists names without opening their databases, so that a fleet of 10,000 instances
// (160,000 databases) fits in memory; such a database is opened, empty, when first used.
const registeredDbs = new Set();
let allDbsGeneration = 0;
let cached = null;
let cachedGen = -1;

function invalidateAllDbs() {
  allDbsGeneration += 1;
}

// A database created (or deleted) through PUT (DELETE) /db updates the cached list in place, so
// that a fleet being created does not rebuild and re-sort the whole list at each request.
function addDbName(name) {
  allDbsGeneration += 1;
  if (cached) {
    const i = lowerBound(cached, name);
    if (cached[i] !== name) cached.splice(i, 0, name);
    cachedGen = allDbsGeneration;
  }
}

function removeDbName(name) {
  allDbsGeneration += 1;
  if (cached) {
    const i = lowerBound(cached, name);
    if (cached[i] === name) cached.splice(i, 1);
    cachedGen = allDbsGeneration;
  }
}

function cacheAllDbs(P) {
  if (!P || P.__shimAllDbsCached) return;
  const orig = P.allDbs.bind(P);
  P.allDbs = function (cb) {
    const gen = allDbsGeneration;
    const p = cached && cachedGen === gen
      ? Promise.resolve(cached)
      : orig().then((dbs) => {
        const set = new Set(dbs);
        for (const n of registeredDbs) set.add(n);
        const sorted = Array.from(set).sort();
        if (gen === allDbsGeneration) {
          cached = sorted;
          cachedGen = gen;
        }
        return sorted;
      });
    if (typeof cb === 'function') {
      p.then((d) => cb(null, d), (e) => cb(e));
      return undefined;
    }
    return p;
  };
  P.__shimAllDbsCached = true;
}

// First index of `sorted` whose value is >= key.
function lowerBound(sorted, key) {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function allDbNames(PouchDB) {
  return new Promise((resolve, reject) => {
    PouchDB.allDbs((err, dbs) => (err ? reject(err) : resolve(dbs.filter((n) => !HIDDEN_DBS.has(n)))));
  });
}

// Sets req.db (404 if the db does not exist), like express-pouchdb's own
// '/:db/*' middleware, which runs only after the shim's routes.
function withDb(app) {
  return (req, res, next) => {
    if (!isDbName(req.params.db)) return next('route');
    utils.setDBOnReq(req.params.db, app.dbWrapper, req, res, next);
  };
}

function seqNumber(seq) {
  if (typeof seq === 'number') return seq;
  if (typeof seq === 'string') {
    const n = parseInt(seq, 10);
    return Number.isNaN(n) ? 0 : n;
  }
  return 0;
}

const deletedCountCache = new Map(); // db name -> {seq, count}

async function countDeleted(name, db, updateSeq) {
  const cached = deletedCountCache.get(name);
  if (cached && cached.seq === updateSeq) return cached.count;
  const changes = await db.changes({ since: 0, style: 'main_only', return_docs: true });
  const count = changes.results.filter((c) => c.deleted).length;
  deletedCountCache.set(name, { seq: updateSeq, count });
  return count;
}

// Fix 6: CouchDB 3 shape of GET /db.
async function dbInfo(name, db) {
  const info = await db.info();
  const seq = seqNumber(info.update_seq);
  const size = typeof info.disk_size === 'number' ? info.disk_size : 0;
  return {
    db_name: name,
    purge_seq: '0',
    update_seq: String(seq),
    sizes: { file: size, external: size, active: size },
    props: {},
    doc_del_count: await countDeleted(name, db, seq),
    doc_count: info.doc_count,
    disk_format_version: 8,
    compact_running: false,
    cluster: { q: 1, n: 1, w: 1, r: 1 },
    instance_start_time: '0',
  };
}

function encodeBookmark(offset) {
  return Buffer.from(JSON.stringify({ o: offset })).toString('base64url');
}

function decodeBookmark(bookmark) {
  try {
    const v = JSON.parse(Buffer.from(bookmark, 'base64url').toString('utf8'));
    if (v && Number.isInteger(v.o) && v.o >= 0) return v.o;
  } catch (e) { /* fall through */ }
  return null;
}

function numberParam(value, name) {
  if (value === undefined || value === null) return undefined;
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(n) || n < 0) {
    const err = new Error(`Invalid value for ${name}: ${JSON.stringify(value)}`);
    err.status = 400;
    err.name = 'query_parse_error';
    throw err;
  }
  return n;
}

// ------------------------------------------------------------- shim routes

function installShimRoutes(app) {
  const config = app.couchConfig;
  const adminsConfigured = () => Object.keys(config.getSection('admins') || {}).length > 0;

  // Fix 3: once an admin exists, everything but a few endpoints needs one
  // (CouchDB 3 defaults). This also avoids express-pouchdb's crash on an
  // anonymous PUT /newdb.
  app.use((req, res, next) => {
    cacheAllDbs(req.PouchDB);
    if (!adminsConfigured() || isAdmin(req)) return next();
    const p = req.path;
    const read = req.method === 'GET' || req.method === 'HEAD';
    if (p === '/_session' || (read && (p === '/' || p === '/_up' || p === '/_uuids'))) {
      return next();
    }
    if (req.couchSession && req.couchSession.userCtx && req.couchSession.userCtx.name) {
      return sendJSON(res, 403, { error: 'forbidden', reason: 'You are not a server admin.' });
    }
    sendJSON(res, 401, { error: 'unauthorized', reason: 'You are not a server admin.' });
  });

  // Test-only fault injection (cozyform's 409 tests): POST /_cozyform_faults {db, id, patch}
  // arms a fault; the next PUT of that doc (after `skip` others) first applies `patch` to the stored doc as a concurrent
  // writer would (a new _rev), so the PUT itself answers 409. Admin only, like every route here.
  // GET /_cozyform_faults lists armed faults and how many fired.
  const faults = new Map();
  let faultsFired = 0;
  app.post('/_cozyform_faults', utils.jsonParser, (req, res) => {
    const b = req.body || {};
    if (typeof b.db !== 'string' || typeof b.id !== 'string' || typeof b.patch !== 'object') {
      return sendJSON(res, 400, { error: 'bad_request', reason: 'expected {db, id, patch}' });
    }
    faults.set(`${b.db}\u0000${b.id}`, { patch: b.patch, skip: Number(b.skip) || 0 });
    sendJSON(res, 201, { ok: true });
  });
  app.get('/_cozyform_faults', (req, res) => sendJSON(res, 200, { armed: faults.size, fired: faultsFired }));

  // Test-only error answers (cozyform's retry tests): POST /_cozyform_errors {method, path, statuses,
  // retry_after} makes the next requests with that method and path answer the given statuses in turn,
  // with a CouchDB-style error body and, when retry_after is given, a Retry-After header (seconds).
  // GET /_cozyform_errors tells how many error answers were given.
  const injectedErrors = new Map();
  let errorsGiven = 0;
  app.post('/_cozyform_errors', utils.jsonParser, (req, res) => {
    const b = req.body || {};
    if (typeof b.method !== 'string' || typeof b.path !== 'string' || !Array.isArray(b.statuses)) {
      return sendJSON(res, 400, { error: 'bad_request', reason: 'expected {method, path, statuses}' });
    }
    const key = `${b.method} ${b.path}`;
    if (b.statuses.length === 0) injectedErrors.delete(key);
    else injectedErrors.set(key, { statuses: b.statuses.map(Number), retryAfter: b.retry_after });
    sendJSON(res, 201, { ok: true });
  });
  app.get('/_cozyform_errors', (req, res) => sendJSON(res, 200, { given: errorsGiven }));
  app.use((req, res, next) => {
    if (injectedErrors.size === 0) return next();
    const key = `${req.method} ${req.path}`;
    const e = injectedErrors.get(key);
    if (!e) return next();
    const status = e.statuses.shift();
    if (e.statuses.length === 0) injectedErrors.delete(key);
    errorsGiven += 1;
    if (e.retryAfter !== undefined && e.retryAfter !== null) res.set('Retry-After', String(e.retryAfter));
    sendJSON(res, status, { error: 'unavailable', reason: 'injected by the test server' });
  });
  app.use(async (req, res, next) => {
    if (req.method !== 'PUT' || faults.size === 0) return next();
    const parts = req.path.split('/').slice(1).map((p) => decodeURIComponent(p));
    if (parts.length < 2) return next();
    const key = `${parts[0]}\u0000${parts.slice(1).join('/')}`;
    const fault = faults.get(key);
    if (!fault) return next();
    if (fault.skip > 0) {
      fault.skip -= 1;
      return next();
    }
    faults.delete(key);
    const patch = fault.patch;
    try {
      const db = await getOrCreateDB(req.PouchDB, parts[0]);
      const doc = await db.get(parts.slice(1).join('/'));
      await db.put(Object.assign(doc, patch));
      faultsFired += 1;
    } catch (err) {
      toStderr('couch-shim: fault injection failed:', err && err.message);
    }
    next();
  });

  // Fix 4: GET /, /_up, /_all_dbs.
  app.get('/', (req, res) => {
    let uuid = config.get('couchdb', 'uuid');
    const reply = () => sendJSON(res, 200, {
      couchdb: 'Welcome',
      version: VERSION,
      git_sha: 'couch-shim',
      uuid,
      features: [],
      vendor: { name: 'couch-test-server (express-pouchdb 4.2.0, PouchDB 7.3.1)' },
    });
    if (uuid) return reply();
    uuid = hexId();
    config.set('couchdb', 'uuid', uuid, reply);
  });

  app.get('/_up', (req, res) => sendJSON(res, 200, { status: 'ok' }));

  app.get('/_all_dbs', async (req, res) => {
    try {
      const q = req.query; // express-pouchdb has already JSON-decoded the values
      const descending = q.descending === true || q.descending === 'true';
      const start = q.start_key !== undefined ? q.start_key : q.startkey;
      const end = q.end_key !== undefined ? q.end_key : q.endkey;
      const inclusiveEnd = !(q.inclusive_end === false || q.inclusive_end === 'false');
      const skip = numberParam(q.skip, 'skip') || 0;
      const limit = numberParam(q.limit, 'limit');
      if (!descending) {
        // The cached sorted list and a binary search: a page costs its size, not the server's.
        const sorted = await req.PouchDB.allDbs();
        const out = [];
        let skipped = 0;
        const from = start !== undefined ? lowerBound(sorted, String(start)) : 0;
        for (let i = from; i < sorted.length; i++) {
          const name = sorted[i];
          if (end !== undefined && (name > String(end) || (!inclusiveEnd && name === String(end)))) break;
          if (HIDDEN_DBS.has(name)) continue;
          if (skipped < skip) {
            skipped += 1;
            continue;
          }
          if (limit !== undefined && out.length >= limit) break;
          out.push(name);
        }
        return sendJSON(res, 200, out);
      }
      let dbs = (await allDbNames(req.PouchDB)).sort();
      if (descending) dbs.reverse();
      dbs = dbs.filter((name) => {
        if (start !== undefined && (descending ? name > String(start) : name < String(start))) return false;
        if (end !== undefined) {
          const e = String(end);
          if (descending ? name < e : name > e) return false;
          if (!inclusiveEnd && name === e) return false;
        }
        return true;
      });
      dbs = dbs.slice(skip, limit === undefined ? undefined : skip + limit);
      sendJSON(res, 200, dbs);
    } catch (err) {
      sendError(res, err);
    }
  });

  app.post('/_cozyform_bench/register_dbs', utils.jsonParser, (req, res) => {
    const names = req.body && req.body.names;
    if (!Array.isArray(names) || !names.every((n) => typeof n === 'string' && validDbName(n))) {
      return sendJSON(res, 400, { error: 'bad_request', reason: '`names` must be a list of valid database names' });
    }
    for (const n of names) registeredDbs.add(n);
    invalidateAllDbs();
    sendJSON(res, 200, { ok: true, registered: names.length });
  });

  // POST /_dbs_info {"keys": [...]} (missing in express-pouchdb).
  app.post('/_dbs_info', utils.jsonParser, async (req, res) => {
    try {
      const keys = req.body && req.body.keys;
      if (!Array.isArray(keys)) {
        return sendJSON(res, 400, { error: 'bad_request', reason: '`keys` member must exist.' });
      }
      const existing = new Set(await allDbNames(req.PouchDB));
      const out = [];
      for (const key of keys) {
        if (typeof key !== 'string' || !existing.has(key)) {
          out.push({ key, error: 'not_found' });
          continue;
        }
        const db = await getOrCreateDB(req.PouchDB, key);
        await app.dbWrapper.wrap(key, db);
        out.push({ key, info: await dbInfo(key, db) });
      }
      sendJSON(res, 200, out);
    } catch (err) {
      sendError(res, err);
    }
  });

  // Fix 5: database-name validation and DELETE of a missing db.
  app.put('/:db', (req, res, next) => {
    const name = req.params.db;
    if (!validDbName(name)) {
      return sendJSON(res, 400, {
        error: 'illegal_database_name',
        reason: `Name: '${name}'. Only lowercase characters (a-z), digits (0-9), and any of` +
          ' the characters _, $, (, ), +, -, and / are allowed. Must begin with a letter.',
      });
    }
    deletedCountCache.delete(name);
    res.on('finish', () => (res.statusCode === 201 ? addDbName(name) : invalidateAllDbs()));
    next();
  });

  app.delete('/:db', async (req, res, next) => {
    const name = req.params.db;
    if (!isDbName(name) || req.query.rev) return next();
    try {
      const dbs = await allDbNames(req.PouchDB);
      if (dbs.indexOf(name) === -1) {
        return sendJSON(res, 404, { error: 'not_found', reason: 'Database does not exist.' });
      }
      deletedCountCache.delete(name);
      res.on('finish', () => {
        registeredDbs.delete(name);
        if (res.statusCode < 300) removeDbName(name);
        else invalidateAllDbs();
      });
      next();
    } catch (err) {
      sendError(res, err);
    }
  });

  // Fix 6: GET /db in the CouchDB 3 shape.
  app.get('/:db', withDb(app), async (req, res) => {
    try {
      sendJSON(res, 200, await dbInfo(req.params.db, req.db));
    } catch (err) {
      sendError(res, err);
    }
  });

  // CouchDB's server-generated ids also for _bulk_docs docs without _id.
  app.post('/:db/_bulk_docs', utils.jsonParser, (req, res, next) => {
    if (req.body && Array.isArray(req.body.docs) && req.body.new_edits !== false) {
      for (const doc of req.body.docs) {
        if (doc && typeof doc === 'object' && !Array.isArray(doc) && doc._id === undefined) {
          doc._id = hexId();
        }
      }
    }
    next();
  });

  // GET /db/_design_docs (missing in express-pouchdb).
  app.get('/:db/_design_docs', withDb(app), async (req, res) => {
    try {
      const q = req.query;
      const descending = q.descending === true;
      const opts = {
        startkey: descending ? '_design0' : '_design/',
        endkey: descending ? '_design/' : '_design0',
        descending,
        include_docs: q.include_docs === true,
        conflicts: q.conflicts === true,
      };
      if (q.limit !== undefined) opts.limit = numberParam(q.limit, 'limit');
      if (q.skip !== undefined) opts.skip = numberParam(q.skip, 'skip');
      sendJSON(res, 200, await req.db.allDocs(opts));
    } catch (err) {
      sendError(res, err);
    }
  });

  // Fix 7: _find with a bookmark, default limit 25, and limit/skip applied
  // here (pouchdb-find applies them to index rows before filtering).
  app.post('/:db/_find', utils.jsonParser, withDb(app), async (req, res) => {
    const started = Date.now();
    try {
      const body = Object.assign({}, req.body || {});
      const limit = body.limit === undefined ? 25 : numberParam(body.limit, 'limit');
      let offset = body.skip === undefined ? 0 : numberParam(body.skip, 'skip');
      if (typeof body.bookmark === 'string' && body.bookmark !== '' && body.bookmark !== 'nil') {
        const b = decodeBookmark(body.bookmark);
        if (b === null) {
          return sendJSON(res, 400, {
            error: 'invalid_bookmark',
            reason: `Invalid bookmark value: ${JSON.stringify(body.bookmark)}`,
          });
        }
        offset += b;
      }
      const wantStats = body.execution_stats === true;
      delete body.limit;
      delete body.skip;
      delete body.bookmark;
      delete body.execution_stats;
      delete body.r;
      delete body.update;
      delete body.stable;
      delete body.stale;
      let result;
      let warning;
      try {
        result = await req.db.find(body);
      } catch (err) {
        // CouchDB falls back to another index, with a warning, when the
        // requested index cannot be used; pouchdb-find fails.
        if (!body.use_index) throw err;
        delete body.use_index;
        result = await req.db.find(body);
        warning = 'The requested index could not be used for this query; another index was used.';
      }
      const total = result.docs.length;
      const docs = result.docs.slice(offset, offset + limit);
      const out = { docs, bookmark: docs.length ? encodeBookmark(offset + docs.length) : 'nil' };
      const warnings = [warning, result.warning].filter(Boolean);
      if (warnings.length) out.warning = warnings.join(' ');
      if (wantStats) {
        out.execution_stats = {
          total_keys_examined: 0,
          total_docs_examined: total,
          total_quorum_docs_examined: 0,
          results_returned: docs.length,
          execution_time_ms: Date.now() - started,
        };
      }
      sendJSON(res, 200, out);
    } catch (err) {
      if (err && err.error && !err.name) {
        // pouchdb-find throws plain {error, message} objects
        return sendJSON(res, err.status || 400, { error: err.error, reason: err.message || err.reason });
      }
      sendError(res, err, 400);
    }
  });

  // Fix 8: _changes (normal, longpoll, continuous) honouring timeout and
  // heartbeat, written as it goes (express-pouchdb's compression is off).
  const changesRoute = [utils.jsonParser, withDb(app), (req, res) => changesFeed(req, res)];
  app.get('/:db/_changes', ...changesRoute);
  app.post('/:db/_changes', ...changesRoute);
}

async function changesFeed(req, res) {
  const q = Object.assign({}, req.query);
  const db = req.db;
  const feed = q.feed || 'normal';
  let opts;
  let limit;
  let since;
  try {
    limit = q.limit === undefined ? undefined : numberParam(q.limit, 'limit');
    if (limit === 0) limit = 1;
    opts = utils.makeOpts(req, {});
    opts.query_params = JSON.parse(JSON.stringify(req.query));
    for (const key of ['include_docs', 'conflicts', 'attachments', 'att_encoding_info', 'style', 'view']) {
      if (q[key] !== undefined) opts[key] = q[key];
    }
    if (q.filter !== undefined) opts.filter = q.filter;
    const body = req.body && typeof req.body === 'object' ? req.body : {};
    const docIds = body.doc_ids || q.doc_ids;
    if (docIds !== undefined) opts.doc_ids = docIds;
    if (body.selector !== undefined) opts.selector = body.selector;
    if (opts.filter === '_doc_ids') {
      delete opts.filter;
      if (!Array.isArray(opts.doc_ids)) {
        return sendJSON(res, 400, { error: 'bad_request', reason: '`doc_ids` filter parameter is not a list of doc ids.' });
      }
    } else if (opts.filter === '_design') {
      opts.filter = (doc) => typeof doc._id === 'string' && doc._id.startsWith('_design/');
    } else if (opts.filter === '_selector' && opts.selector === undefined) {
      return sendJSON(res, 400, { error: 'bad_request', reason: 'Selector must be specified in POST payload' });
    }
    if (q.since === 'now') {
      since = seqNumber((await db.info()).update_seq);
    } else {
      since = seqNumber(q.since);
    }
  } catch (err) {
    return sendError(res, err, 400);
  }

  // The changes that already exist.
  let first;
  try {
    const firstOpts = Object.assign({}, opts, { since, return_docs: true, live: false });
    if (limit !== undefined) firstOpts.limit = limit;
    if (feed === 'normal' && (q.descending === true || q.descending === 'true')) firstOpts.descending = true;
    first = await db.changes(firstOpts);
  } catch (err) {
    return sendError(res, err, 400);
  }
  let lastSeq = first.last_seq === undefined ? since : first.last_seq;
  const limitReached = limit !== undefined && first.results.length >= limit;

  async function pending() {
    if (!limitReached) return 0;
    try {
      const rest = await db.changes(Object.assign({}, opts, { since: lastSeq, return_docs: true, live: false }));
      return rest.results.length;
    } catch (e) {
      return 0;
    }
  }

  if (feed !== 'continuous' && feed !== 'longpoll' && feed !== 'eventsource') {
    return sendJSON(res, 200, { results: first.results, last_seq: lastSeq, pending: await pending() });
  }
  if (feed === 'longpoll' && first.results.length > 0) {
    return sendJSON(res, 200, { results: first.results, last_seq: lastSeq, pending: await pending() });
  }

  // A streaming response: continuous, or a longpoll that waits for a change.
  res.status(200);
  utils.setJsonOrPlaintext(res);
  res.setHeader('Cache-Control', 'must-revalidate');
  res.setHeader('Transfer-Encoding', 'chunked');
  if (typeof res.flushHeaders === 'function') res.flushHeaders();

  let finished = false;
  let live = null;
  let timeoutTimer = null;
  let heartbeatTimer = null;
  let count = 0;

  const heartbeat = q.heartbeat === true || q.heartbeat === 'true' ? 60000
    : (q.heartbeat !== undefined && Number(q.heartbeat) > 0 ? Number(q.heartbeat) : null);
  // With a heartbeat the feed stays open until the client goes (CouchDB);
  // otherwise it ends after `timeout` ms without a change (default 60 s).
  const timeout = heartbeat !== null ? null
    : (q.timeout !== undefined && Number(q.timeout) >= 0 ? Number(q.timeout) : 60000);

  function cleanup() {
    finished = true;
    if (timeoutTimer) clearTimeout(timeoutTimer);
    if (heartbeatTimer) clearInterval(heartbeatTimer);
    if (live) {
      try { live.cancel(); } catch (e) { /* ignore */ }
    }
    req.removeListener('close', onClose);
    res.removeListener('close', onClose);
  }
  function onClose() {
    if (!finished) cleanup();
  }
  function finish() {
    if (finished) return;
    cleanup();
    if (feed === 'longpoll') {
      res.end('],\n"last_seq":' + JSON.stringify(lastSeq) + ',"pending":0}\n');
    } else {
      res.end(JSON.stringify({ last_seq: lastSeq, pending: 0 }) + '\n');
    }
  }
  function armTimeout() {
    if (timeout === null) return;
    if (timeoutTimer) clearTimeout(timeoutTimer);
    timeoutTimer = setTimeout(finish, timeout);
  }
  req.on('close', onClose);
  res.on('close', onClose);

  if (feed === 'longpoll') {
    res.write('{"results":[\n');
  } else {
    for (const change of first.results) {
      res.write(JSON.stringify(change) + '\n');
      count++;
    }
    if (limitReached) return finish();
  }

  if (heartbeat !== null) {
    heartbeatTimer = setInterval(() => {
      if (!finished) res.write('\n');
    }, heartbeat);
  }
  armTimeout();

  live = db.changes(Object.assign({}, opts, { since: lastSeq, live: true, return_docs: false }));
  live.on('change', (change) => {
    if (finished) return;
    lastSeq = change.seq;
    if (feed === 'longpoll') {
      res.write(JSON.stringify(change));
      return finish();
    }
    res.write(JSON.stringify(change) + '\n');
    count++;
    if (limit !== undefined && count >= limit) return finish();
    armTimeout();
  });
  live.on('error', (err) => {
    if (finished) return;
    toStderr('couch-shim: changes feed error:', err && err.message);
    finish();
  });
}

// ------------------------------------------------------------ server setup

// '+' in a path is a space for CouchDB (apache/couchdb#3565); express keeps
// it literal. express-pouchdb's vhost step rebuilds req.url from
// req.originalUrl, so both are rewritten.
function plusToSpace(url) {
  const q = url.indexOf('?');
  const p = q < 0 ? url : url.slice(0, q);
  if (p.indexOf('+') === -1) return url;
  return p.replace(/\+/g, '%20') + (q < 0 ? '' : url.slice(q));
}

async function writeConfig(configPath, admin) {
  // The admins are exactly those given by --admin (none: admin party); the
  // rest of config.json (uuid, ...) is kept across restarts. The password is
  // hashed here, as express-pouchdb would, so that the file never holds it.
  let cfg = {};
  if (fs.existsSync(configPath)) {
    try {
      cfg = JSON.parse(fs.readFileSync(configPath, 'utf8'));
    } catch (e) {
      cfg = {};
    }
  }
  delete cfg.admins;
  delete cfg.log;
  if (admin) {
    const auth = require(require.resolve('pouchdb-auth', {
      paths: [path.dirname(require.resolve('express-pouchdb/package.json'))],
    }));
    cfg.admins = await auth.hashAdminPasswords({ [admin.name]: admin.password });
  }
  fs.writeFileSync(configPath, JSON.stringify(cfg, null, 2) + '\n');
}

async function main() {
  const configPath = path.join(args.dir, 'config.json');
  const logPath = path.resolve(args.log || path.join(args.dir, 'log.txt'));
  await writeConfig(configPath, args.admin);

  const dataDir = path.join(args.dir, 'data') + path.sep;
  fs.mkdirSync(dataDir, { recursive: true });

  let PouchDB = require('pouchdb-core')
    .plugin(require('pouchdb-adapter-http'))
    .plugin(require('pouchdb-replication'))
    .plugin(require('pouchdb-mapreduce'));
  PouchDB = PouchDB.plugin(args.inMemory ? require('pouchdb-adapter-memory') : require('pouchdb-adapter-leveldb'));
  const ServerPouchDB = PouchDB.defaults({ prefix: dataDir });

  const pouchApp = expressPouchDB({
    configPath,
    logPath,
    overrideMode: { exclude: ['compression', 'routes/fauxton'] },
  });
  pouchApp.set('etag', false);
  await pouchApp.setPouchDB(ServerPouchDB);

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use((req, res, next) => {
    req.url = plusToSpace(req.url);
    req.originalUrl = plusToSpace(req.originalUrl);
    res.setHeader('Server', `CouchDB/${VERSION} (couch-test-server)`);
    next();
  });
  app.use(pouchApp);

  const server = app.listen(args.port, args.host);
  server.on('error', (err) => {
    process.stderr.write(`couch-shim: cannot listen on ${args.host}:${args.port}: ${err.message}\n`);
    process.exit(1);
  });
  server.on('listening', () => {
    const port = server.address().port;
    const host = args.host.includes(':') ? `[${args.host}]` : args.host;
    process.stdout.write(`couch-shim listening on http://${host}:${port}\n`);
  });

  let stopping = false;
  function stop(signal) {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`couch-shim: ${signal}, stopping\n`);
    server.close();
    if (typeof server.closeAllConnections === 'function') server.closeAllConnections();
    const closing = [];
    const cache = ServerPouchDB.__dbCacheMap;
    if (cache && typeof cache.forEach === 'function') {
      cache.forEach((db) => closing.push(Promise.resolve().then(() => db.close()).catch(() => {})));
    }
    const force = setTimeout(() => process.exit(0), 3000);
    force.unref();
    Promise.all(closing).then(() => process.exit(0));
  }
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

process.on('uncaughtException', (err) => {
  toStderr('couch-shim: uncaught exception:', err && err.stack ? err.stack : err);
});
process.on('unhandledRejection', (err) => {
  toStderr('couch-shim: unhandled rejection:', err && err.stack ? err.stack : err);
});

main().catch((err) => {
  toStderr('couch-shim: failed to start:', err && err.stack ? err.stack : err);
  process.exit(1);
});
