// Stops what global-setup started (moto_server's process group and the counting proxy) and waits,
// boundedly, until they are gone, so a finished `jest` leaves no process or port behind.
import type { ChildProcess } from 'child_process'
import * as fs from 'fs'
import { STATE_FILE } from './global-setup'

function exited(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true)
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve(true)
    })
  })
}

function kill(pid: number | undefined, signal: NodeJS.Signals) {
  if (!pid) return
  try {
    process.kill(pid, signal)
  } catch {}
}

export default async function globalTeardown() {
  const servers = (globalThis as any).__pushqTestServers as
    | { stop: () => void; dispose: () => void; moto: ChildProcess; proxy: ChildProcess }
    | undefined
  if (servers) {
    servers.stop()
    const [motoGone, proxyGone] = await Promise.all([exited(servers.moto, 5_000), exited(servers.proxy, 5_000)])
    if (!motoGone) kill(-servers.moto.pid!, 'SIGKILL')
    if (!proxyGone) kill(servers.proxy.pid, 'SIGKILL')
    servers.dispose()
    delete (globalThis as any).__pushqTestServers
  } else if (fs.existsSync(STATE_FILE)) {
    // Setup ran but its globals are not visible here: fall back to the PIDs it wrote down.
    const { moto, proxy } = JSON.parse(fs.readFileSync(STATE_FILE, 'utf8'))
    kill(-moto, 'SIGTERM')
    kill(proxy, 'SIGTERM')
  }
  fs.rmSync(STATE_FILE, { force: true })
}
