/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  testMatch: ['<rootDir>/__test__/**/*.spec.ts'],
  transform: {
    '^.+\\.ts$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } }],
  },
  // One moto_server and one counting proxy for the whole run (endpoints reach workers via env).
  globalSetup: '<rootDir>/__test__/support/global-setup.ts',
  globalTeardown: '<rootDir>/__test__/support/global-teardown.ts',
  testTimeout: 120000,
  maxWorkers: 2,
}
