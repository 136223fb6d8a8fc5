// Starts one moto_server (real SQS API) on a free loopback port and a counting proxy in front
// of it, for the whole jest run. Workers inherit the endpoints through the environment.
import { spawn, ChildProcess } from 'child_process'
import * as fs from 'fs'
import * as net from 'net'
import * as os from 'os'
import * as path from 'path'

export const STATE_FILE = path.join(os.tmpdir(), `pushq-jest-${process.pid}.json`)

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

/** Polls until `url` answers at all, or fails after `ms`. */
async function waitForHttp(url: string, ms: number, child: ChildProcess) {
  const deadline = Date.now() + ms
  let last: unknown
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${url}: server exited with ${child.exitCode}`)
    try {
      await fetch(url)
      return
    } catch (e) {
      last = e
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  throw new Error(`${url} did not answer within ${ms} ms: ${String(last)}`)
}

export default async function globalSetup() {
  const port = await freePort()
  // Its own process group, so teardown can stop moto and the workers it forks.
  const moto = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let motoErr = ''
  moto.stderr!.on('data', (d) => (motoErr = (motoErr + d).slice(-4000)))
  moto.on('error', (e) => (motoErr += String(e)))
  const endpoint = `http://127.0.0.1:${port}`
  try {
    await waitForHttp(`${endpoint}/moto-api/`, 30_000, moto)
  } catch (e) {
    throw new Error(`moto_server did not start (pip install 'moto[server]'): ${e}\n${motoErr}`)
  }

  const proxy = spawn(process.execPath, [path.join(__dirname, 'counting-proxy.js'), endpoint], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const proxyPort: string = await new Promise((resolve, reject) => {
    proxy.stdout!.once('data', (d) => resolve(String(d).trim()))
    proxy.once('exit', (code) => reject(new Error(`counting proxy exited with ${code}`)))
  })

  const stop = () => {
    try {
      process.kill(-moto.pid!, 'SIGTERM')
    } catch {}
    proxy.kill()
  }
  process.once('exit', stop)
  ;(globalThis as any).__pushqStop = stop
  fs.writeFileSync(STATE_FILE, JSON.stringify({ moto: moto.pid, proxy: proxy.pid }))

  process.env.PUSHQ_TEST_SQS_ENDPOINT = endpoint
  process.env.PUSHQ_TEST_SQS_PROXY = `http://127.0.0.1:${proxyPort}`
  process.env.AWS_ACCESS_KEY_ID = 'testing'
  process.env.AWS_SECRET_ACCESS_KEY = 'testing'
  process.env.AWS_REGION = 'us-east-1'
  // The test helpers use the JS SDK, which warns about Node 20 on every client; that is not ours.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'
  delete process.env.AWS_PROFILE
  delete process.env.AWS_ENDPOINT_URL
  delete process.env.AWS_ENDPOINT_URL_SQS
  delete process.env.PUSHQ_QUEUE_URL
  delete process.env.PUSHQ_MODE
}
