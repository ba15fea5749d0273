/**
 * `assistd serve` with the test tool registered, as its own process (`node --import tsx test/support/tool-server.ts`,
 * started by spawnToolServer in server.ts): settings from the environment like src/cli.ts, plus
 *
 * - TEST_TOOL_DELAY_MS: how long each `add` execution waits, e.g. `60000`; or a comma-separated list, one value per
 *   execution of this process in order, the last repeating (`0,60000`: the first call is quick, the next ones slow);
 * - TEST_TOOL_LOG: a file the tool appends `{"event":"start"|"finish"|"abort","callId":…}` lines to.
 *
 * It shuts down gracefully on SIGTERM or SIGINT, like the CLI.
 */
import { ConfigError, loadConfig } from '../../src/config.ts';
import { createLogger, startServer } from '../../src/main.ts';
import { addTool } from './test-tools.ts';

function delaysFrom(value: string | undefined): number[] {
  if (value === undefined || value.trim() === '') return [0];
  const delays = value.split(',').map((part) => Number(part.trim()));
  if (delays.some((ms) => !Number.isFinite(ms) || ms < 0))
    throw new Error(`TEST_TOOL_DELAY_MS must be milliseconds (or a comma-separated list of them), not '${value}'`);
  return delays;
}

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config);
  const tool = addTool({
    delayMs: delaysFrom(process.env.TEST_TOOL_DELAY_MS),
    logFile: process.env.TEST_TOOL_LOG?.trim() || undefined,
  });
  const server = await startServer(config, logger, { tools: [tool] });
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info(`${signal} received, shutting down`);
      server.close().then(resolve, resolve);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    if (error instanceof ConfigError) process.stderr.write(`tool-server: invalid setting ${error.message}\n`);
    else
      process.stderr.write(`tool-server: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
