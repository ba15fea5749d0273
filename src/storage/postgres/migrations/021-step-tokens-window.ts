// Nothing, on purpose. A migration of this name, released and then reverted, made an index on the steps
// (`run_steps_by_time`) that nothing uses now. A database that ran it holds its name, and a server refuses a
// database that ran a migration it does not list: the name stays, and 023-no-step-time-index drops that index.
export async function up(): Promise<void> {}
