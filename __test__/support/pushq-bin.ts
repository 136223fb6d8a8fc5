// The `pushq` CLI binary (built by `cargo test`/`cargo build`), and its FCM emulator.
import { spawn, ChildProcess, execFile, execFileSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import * as readline from 'readline'

export const PUSHQ_BIN =
  process.env.PUSHQ_BIN ||
  path.join(process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache', 'pushq', 'target'), 'debug', 'pushq')

export function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'pushq-jest-'))
}

/** Polls `ready` every 100 ms until it holds; fails after `ms` naming `what`. */
export async function waitFor(what: string, ms: number, ready: () => Promise<boolean>) {
  const deadline = Date.now() + ms
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

const mainModule = JSON.stringify(path.resolve(__dirname, '..', '..'))

/**
 * Runs a user's script with node (`require('pushq')` is this checkout), without FCM credentials
 * unless `env` gives them; resolves when the process exits on its own.
 */
export function runScript(source: string, env: Record<string, string>) {
  const file = path.join(tempDir(), 'script.js')
  fs.writeFileSync(file, source.replaceAll("require('pushq')", `require(${mainModule})`))
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [file], { env: { ...process.env, PUSHQ_FCM_CREDENTIALS: '', GOOGLE_APPLICATION_CREDENTIALS: '', ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as any).code ?? 1) : 0, stdout, stderr }),
    )
  })
}

export type Emulator = { endpoint: string; credentials: string; stop: () => void; received: () => Promise<any[]> }

/**
 * Starts `pushq fcm-emulator` on a free port, with a service-account key written for it; with
 * several `projects`, a key each, written as the credentials map (project name = app name).
 */
export async function startEmulator(projects: string[] = []): Promise<Emulator> {
  const credentials = path.join(tempDir(), 'service-account.json')
  const flags = projects.flatMap((p) => ['--project', p])
  const child = spawn(PUSHQ_BIN, ['fcm-emulator', '--port', '0', '--write-credentials', credentials, ...flags], {
    stdio: ['ignore', 'pipe', 'ignore'],
  })
  const line: string = await new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).once('line', resolve)
    child.once('exit', (code) => reject(new Error(`fcm-emulator exited with ${code}`)))
  })
  const endpoint = line.replace('listening on ', '').trim()
  return {
    endpoint,
    credentials,
    stop: () => child.kill(),
    received: async () => (await (await fetch(`${endpoint}/__received`)).json()).messages,
  }
}

const created: Array<['postgres' | 'mysql', string]> = []

/** A fresh database of each kind, created with the servers' own command-line clients. */
export function freshDatabase(kind: 'sqlite' | 'postgres' | 'mysql'): string {
  const name = `pushq_${Date.now()}_${Math.floor(Math.random() * 1e6)}`
  if (kind === 'sqlite') return `sqlite://${path.join(tempDir(), 'pushq.db')}`
  created.push([kind, name])
  if (kind === 'postgres') {
    execFileSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-d', 'test', '-qc', `CREATE DATABASE ${name}`])
    return `postgres://postgres@127.0.0.1:5432/${name}`
  }
  execFileSync('mysql', ['-h', '127.0.0.1', '-uroot', '-e', `CREATE DATABASE ${name}`])
  return `mysql://root@127.0.0.1:3306/${name}`
}

/** Drops the server databases `freshDatabase` created in this test file. */
export function dropDatabases() {
  for (const [kind, name] of created.splice(0)) {
    if (kind === 'postgres') execFileSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-d', 'test', '-qc', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`])
    else execFileSync('mysql', ['-h', '127.0.0.1', '-uroot', '-e', `DROP DATABASE IF EXISTS ${name}`])
  }
}

/** Runs `pushq` to completion. */
export function pushq(args: string[], env: Record<string, string>) {
  return execFileSync(PUSHQ_BIN, args, { env: { ...process.env, ...env }, encoding: 'utf8' })
}

export function startWorker(args: string[], env: Record<string, string>): ChildProcess {
  return spawn(PUSHQ_BIN, ['worker', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] })
}

/**
 * Runs `pushq worker` with `args` until `until` resolves, then stops it (SIGTERM) and waits for it
 * to exit; if `until` fails, its error carries the worker's stderr.
 */
export async function withWorker(args: string[], env: Record<string, string>, until: () => Promise<void>) {
  const worker = startWorker(args, env)
  let log = ''
  worker.stderr!.on('data', (d) => (log += d))
  const exited = new Promise((resolve) => worker.once('exit', resolve))
  try {
    await until()
  } catch (e) {
    throw new Error(`${e}\nworker log:\n${log}`)
  } finally {
    worker.kill('SIGTERM')
    await exited
  }
}
