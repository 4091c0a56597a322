#!/usr/bin/env node
// Offline Solana validator for the CryptoCity Pay sandbox.
//
// Starts an in-memory surfnet (surfpool / LiteSVM) with clock-driven 400 ms
// slots, optionally exposes it on fixed 127.0.0.1 ports, prints ONE JSON line
// on stdout when ready and stops on SIGTERM/SIGINT or when stdin closes (so a
// parent that dies never leaves it running).
//
// Usage: node surfnet.js [--rpc-port N] [--ws-port N] [--slot-time-ms 400]
//                        [--payer-keypair FILE] [--ignore-stdin] [--verbose]
"use strict";

const fs = require("fs");
const net = require("net");

const PLATFORM_PACKAGES = {
  "linux-x64": "@solana/surfpool-linux-x64-gnu",
  "darwin-arm64": "@solana/surfpool-darwin-arm64",
  "darwin-x64": "@solana/surfpool-darwin-x64",
};

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function fail(message) {
  emit({ event: "error", error: message });
  process.exit(1);
}

function parseArgs(argv) {
  const opts = { rpcPort: 0, wsPort: 0, slotTimeMs: 400, payerKeypair: null,
    ignoreStdin: false, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) fail(`missing value for ${arg}`);
      return argv[++i];
    };
    const int = (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535) fail(`bad number for ${arg}: ${v}`);
      return n;
    };
    if (arg === "--rpc-port") opts.rpcPort = int(next());
    else if (arg === "--ws-port") opts.wsPort = int(next());
    else if (arg === "--slot-time-ms") opts.slotTimeMs = int(next());
    else if (arg === "--payer-keypair") opts.payerKeypair = next();
    else if (arg === "--ignore-stdin") opts.ignoreStdin = true;
    else if (arg === "--verbose") opts.verbose = true;
    else fail(`unknown argument: ${arg}`);
  }
  return opts;
}

function loadSurfnet() {
  const key = `${process.platform}-${process.arch}`;
  const pkg = PLATFORM_PACKAGES[key];
  if (!pkg) fail(`surfpool has no native package for ${key}`);
  try {
    return require(pkg).Surfnet;
  } catch (err) {
    fail(`cannot load ${pkg} (run 'python -m sandbox.solana.install'): ${err.message}`);
  }
  return null;
}

// The Node SDK always binds surfnet on dynamic ports; a plain TCP relay gives
// callers the fixed port they asked for (works for HTTP and WebSocket alike).
function relay(listenPort, upstreamUrl) {
  const upstream = new URL(upstreamUrl);
  const sockets = new Set();
  const server = net.createServer((client) => {
    const backend = net.connect(Number(upstream.port), upstream.hostname);
    for (const s of [client, backend]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => { client.destroy(); backend.destroy(); });
    }
    client.pipe(backend);
    backend.pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(listenPort, "127.0.0.1", () => {
      resolve({
        close() {
          for (const s of sockets) s.destroy();
          server.close();
        },
      });
    });
  });
}

function withPort(url, port) {
  const u = new URL(url);
  u.port = String(port);
  return u.toString().replace(/\/$/, "");
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const Surfnet = loadSurfnet();
  const config = { offline: true, blockProductionMode: "clock", slotTimeMs: opts.slotTimeMs };
  if (opts.payerKeypair) {
    config.payerSecretKey = JSON.parse(fs.readFileSync(opts.payerKeypair, "utf8"));
  }

  let surfnet;
  try {
    surfnet = Surfnet.startWithConfig(config);
  } catch (err) {
    fail(`surfnet failed to start: ${err.message}`);
  }

  const relays = [];
  let stopping = false;
  const shutdown = (reason) => {
    if (stopping) return;
    stopping = true;
    for (const r of relays) r.close();
    try {
      surfnet.stop();
    } catch (err) {
      process.stderr.write(`surfnet stop: ${err.message}\n`);
    }
    if (opts.verbose) process.stderr.write(`surfnet stopped (${reason})\n`);
    process.exit(0);
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  process.on("SIGHUP", () => shutdown("SIGHUP"));

  let rpcUrl = surfnet.rpcUrl;
  let wsUrl = surfnet.wsUrl;
  try {
    if (opts.rpcPort) {
      relays.push(await relay(opts.rpcPort, surfnet.rpcUrl));
      rpcUrl = withPort(surfnet.rpcUrl, opts.rpcPort);
    }
    if (opts.wsPort) {
      relays.push(await relay(opts.wsPort, surfnet.wsUrl));
      wsUrl = withPort(surfnet.wsUrl, opts.wsPort);
    }
  } catch (err) {
    for (const r of relays) r.close();
    surfnet.stop();
    fail(`cannot listen on 127.0.0.1: ${err.message}`);
  }

  if (!opts.ignoreStdin) {
    // Parent keeps our stdin open; EOF means it is gone.
    process.stdin.on("end", () => shutdown("stdin closed"));
    process.stdin.on("error", () => shutdown("stdin error"));
    process.stdin.resume();
  }

  // Surfnet buffers events in an unbounded queue: drain it regularly, and keep
  // the event loop alive (the native validator threads do not).
  setInterval(() => {
    for (const ev of surfnet.drainEvents()) {
      if (opts.verbose || ev.kind === "errorLog" || ev.kind === "aborted") {
        process.stderr.write(`[surfnet] ${ev.kind}: ${ev.message || ""}\n`);
      }
    }
  }, 1000);

  emit({
    event: "ready",
    rpcUrl,
    wsUrl,
    upstreamRpcUrl: surfnet.rpcUrl,
    upstreamWsUrl: surfnet.wsUrl,
    payer: surfnet.payer,
    slotTimeMs: opts.slotTimeMs,
    pid: process.pid,
  });
}

main().catch((err) => fail(String(err && err.stack ? err.stack : err)));
