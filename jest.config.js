/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  testMatch: ['<rootDir>/__test__/**/*.spec.ts'],
  transform: { '^.+\\.ts$': ['@swc/jest'] },
  globalSetup: '<rootDir>/__test__/support/global-setup.ts',
  globalTeardown: '<rootDir>/__test__/support/global-teardown.ts',
  testTimeout: 120000,
  maxWorkers: 2,
}
