/**
 * The floor for bench/api.bench.ts: the same framework (Fastify, no logging) answering one constant route with a
 * JSON body shaped and sized like a 20-message list page. Whatever assistd adds on top of this is its own cost.
 * Prints `floor listening on <url>` once it listens.
 */
import Fastify from 'fastify';
import { listenAsFloor } from './floor-listen.ts';

const THREAD_ID = 'thread_Floor00000000000000000000';

function message(i: number) {
  return {
    id: `msg_Floor${String(i).padStart(19, '0')}`,
    object: 'thread.message',
    created_at: 1_795_000_000,
    assistant_id: null,
    thread_id: THREAD_ID,
    run_id: null,
    status: 'completed',
    incomplete_details: null,
    completed_at: 1_795_000_000,
    incomplete_at: null,
    role: 'user',
    content: [{ type: 'text', text: { value: `Benchmark message number ${i}`, annotations: [] } }],
    attachments: [],
    metadata: {},
  };
}

const data = Array.from({ length: 20 }, (_, i) => message(i));
const body = { object: 'list', data, first_id: data[0]!.id, last_id: data.at(-1)!.id, has_more: true };

// Connections closed when the floor stops, even mid-request (see listenAsFloor).
const app = Fastify({ logger: false, forceCloseConnections: true });
app.get('/floor', async () => body);

await listenAsFloor(app);
