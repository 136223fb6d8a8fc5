// Stops what global-setup started.
export default async function globalTeardown() {
  ;(globalThis as any).__pushqStop?.()
}
