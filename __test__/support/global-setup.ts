// Starts one moto_server (real SQS API) on a free loopback port and a counting proxy in front of
// it (counting-proxy.js), for the whole jest run. Workers inherit the endpoints through the
// environment: PUSHQ_TEST_SQS_ENDPOINT (moto) and PUSHQ_TEST_SQS_PROXY (the proxy).
//
// Stopping them: global-teardown calls stop(). If jest dies without tearing down, the process
// 'exit'/signal handlers below call it; and if jest is killed outright (SIGKILL), the proxy's stdin
// pipe closes, so the proxy exits and takes moto's process group with it.
import { spawn, ChildProcess } from 'child_process'
import * as fs from 'fs'
import * as net from 'net'
import * as os from 'os'
import * as path from 'path'

/** Where the children's PIDs are written (for teardown, and for a human after a crash). */
export const STATE_FILE = path.join(os.tmpdir(), `pushq-jest-${process.pid}.json`)
const READY_MS = 20_000

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => resolve(port))
    })
  })
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Why the child can no longer answer (it failed to spawn or exited), if it cannot. */
function deadReason(child: ChildProcess & { spawnError?: Error }): string | undefined {
  if (child.spawnError) return String(child.spawnError)
  if (child.exitCode !== null || child.signalCode !== null) return `exited (${child.exitCode ?? child.signalCode})`
  return undefined
}

/** Polls until `url` answers HTTP at all (any status), or fails at the deadline. */
async function waitForHttp(url: string, deadline: number, child: ChildProcess): Promise<void> {
  let last: unknown
  while (Date.now() < deadline) {
    const dead = deadReason(child)
    if (dead) throw new Error(`${dead} before answering ${url}`)
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(Math.max(1, Math.min(2_000, deadline - Date.now()))) })
      await res.arrayBuffer()
      return
    } catch (e) {
      last = e
      await sleep(100)
    }
  }
  throw new Error(`${url} did not answer within ${READY_MS} ms: ${String(last)}`)
}

/** The first line the child prints on stdout (the proxy prints its port), or fails at the deadline. */
function firstLine(child: ChildProcess, deadline: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = ''
    const timer = setTimeout(() => done(new Error(`no output within ${READY_MS} ms`)), Math.max(0, deadline - Date.now()))
    const onData = (d: Buffer) => {
      text += d.toString('utf8')
      const nl = text.indexOf('\n')
      if (nl >= 0) done(undefined, text.slice(0, nl).trim())
    }
    const onExit = (code: number | null, signal: string | null) => done(new Error(`exited (${code ?? signal})`))
    function done(err?: Error, line?: string) {
      clearTimeout(timer)
      child.stdout!.off('data', onData)
      child.off('exit', onExit)
      if (err) reject(err)
      else resolve(line!)
    }
    child.stdout!.on('data', onData)
    child.once('exit', onExit)
  })
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals) {
  if (!pid) return
  try {
    process.kill(-pid, signal)
  } catch {}
}

export default async function globalSetup() {
  const deadline = Date.now() + READY_MS
  const port = await freePort()
  // Own process group (detached): moto_server is usually a pyenv shim that runs python as a
  // child, so the PID we get is not the server's; killing the group reaches both. stdin is
  // ignored so the server never reads the terminal.
  const moto = spawn('moto_server', ['-p', String(port), '-H', '127.0.0.1'], {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let motoErr = ''
  moto.stderr!.on('data', (d) => (motoErr = (motoErr + d).slice(-4000)))
  moto.on('error', (e) => ((moto as { spawnError?: Error }).spawnError = e))
  // stdio pipes would keep jest's event loop alive; the child is ours to stop, not to wait for.
  moto.unref()
  ;(moto.stderr as any)?.unref?.()

  // Not detached: Ctrl-C reaches the proxy with jest, and it then stops moto (see the proxy).
  let proxy: ChildProcess | undefined
  const stop = () => {
    killGroup(moto.pid, 'SIGTERM')
    if (proxy && proxy.exitCode === null && proxy.signalCode === null) proxy.kill('SIGTERM')
    fs.rmSync(STATE_FILE, { force: true })
  }
  const onSignal = (signal: NodeJS.Signals) => {
    stop()
    // Then die of the signal as we would have without this handler.
    dispose()
    process.kill(process.pid, signal)
  }
  /** Removes the handlers (teardown stopped the servers itself). */
  const dispose = () => {
    process.removeListener('exit', stop)
    process.removeListener('SIGINT', onSignal)
    process.removeListener('SIGTERM', onSignal)
    process.removeListener('SIGHUP', onSignal)
  }
  process.once('exit', stop)
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  process.once('SIGHUP', onSignal)

  const endpoint = `http://127.0.0.1:${port}`
  try {
    await waitForHttp(`${endpoint}/moto-api/`, deadline, moto)
  } catch (e) {
    stop()
    throw new Error(`moto_server did not start (pip install 'moto[server]'): ${e}\n${motoErr}`)
  }

  proxy = spawn(process.execPath, [path.join(__dirname, 'counting-proxy.js'), endpoint, String(moto.pid)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  proxy.on('error', (e) => ((proxy as { spawnError?: Error }).spawnError = e))
  let proxyPort: string
  try {
    proxyPort = await firstLine(proxy, deadline)
    await waitForHttp(`http://127.0.0.1:${proxyPort}/__counts`, deadline, proxy)
  } catch (e) {
    stop()
    throw new Error(`counting proxy did not start: ${e}`)
  }
  // Keep the stdin pipe open (its closing is the proxy's signal to exit) without holding jest.
  proxy.unref()
  ;(proxy.stdin as any)?.unref?.()
  ;(proxy.stdout as any)?.unref?.()

  ;(globalThis as any).__pushqTestServers = { stop, dispose, moto, proxy }
  fs.writeFileSync(STATE_FILE, JSON.stringify({ moto: moto.pid, proxy: proxy.pid, endpoint, proxyPort }))

  process.env.PUSHQ_TEST_SQS_ENDPOINT = endpoint
  process.env.PUSHQ_TEST_SQS_PROXY = `http://127.0.0.1:${proxyPort}`
  process.env.AWS_ACCESS_KEY_ID = 'testing'
  process.env.AWS_SECRET_ACCESS_KEY = 'testing'
  process.env.AWS_REGION = 'us-east-1'
  // The test helpers use the JS SDK, which warns about Node 20 on every client; that is not ours.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'
  delete process.env.AWS_PROFILE
  delete process.env.AWS_SESSION_TOKEN
  delete process.env.AWS_DEFAULT_REGION
  delete process.env.AWS_ENDPOINT_URL
  delete process.env.AWS_ENDPOINT_URL_SQS
  delete process.env.PUSHQ_QUEUE_URL
  delete process.env.PUSHQ_MODE
}
