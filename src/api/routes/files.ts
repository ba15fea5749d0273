import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError, invalidRequest } from '../../domain/errors.ts';
import {
  BATCH_FILE_EXPIRY_SECONDS,
  FILE_EXPIRY_MAX_SECONDS,
  FILE_EXPIRY_MIN_SECONDS,
  UPLOAD_PURPOSES,
} from '../../domain/files.ts';
import { type FileFields, type FileService, fileTooLarge, type ReceivedUpload } from '../../files/file-service.ts';
import { discardRest } from '../discard.ts';
import { integerParameter, parsePageRequest, single, toListObject } from '../pagination.ts';
import { serializeDeleted, serializeFile } from '../serializers.ts';

/** The form fields of an upload besides `file` (the SDK sends `expires_after` as bracketed fields). */
const FIELDS = ['purpose', 'expires_after[anchor]', 'expires_after[seconds]'] as const;
type FieldName = (typeof FIELDS)[number];

/** `/files` lists up to 10,000 files a page, 10,000 by default, and pages only forwards. */
const FILE_PAGE = { defaultLimit: 10_000, maxLimit: 10_000, before: false };

export function registerFileRoutes(app: FastifyInstance, files: FileService): void {
  app.post('/v1/files', async (request) => {
    if (!request.isMultipart())
      throw new ApiError(
        415,
        `Invalid Content-Type header (${request.headers['content-type'] ?? 'none'}), expected multipart/form-data with the fields 'file' and 'purpose'.`,
        { code: 'unsupported_content_type' },
      );
    const upload = await receiveForm(request, files);
    return serializeFile(await upload.received.commit(upload.fields));
  });

  app.get('/v1/files', async (request) => {
    const query = request.query as Record<string, unknown>;
    const purpose = single(query, 'purpose');
    const page = await files.list(request.scope, parsePageRequest(query, FILE_PAGE), purpose || undefined);
    return toListObject(page, serializeFile);
  });

  app.get('/v1/files/:file_id', async (request) => {
    const id = fileId(request.params);
    return serializeFile(await files.get(request.scope, id));
  });

  app.delete('/v1/files/:file_id', async (request) => {
    const id = fileId(request.params);
    await files.delete(request.scope, id);
    return serializeDeleted(id, 'file');
  });

  app.get('/v1/files/:file_id/content', async (request, reply) => {
    const id = fileId(request.params);
    const { file, body } = await files.content(request.scope, id);
    return reply
      .header('content-type', 'application/octet-stream')
      .header('content-length', String(file.bytes))
      .header('content-disposition', contentDisposition(file.filename))
      .send(body);
  });
}

/**
 * Reads the multipart form: the file's bytes go straight to the blob store as they arrive, the other fields are
 * collected and validated once the form has ended (the SDK sends `file` first, `purpose` after it). Whatever
 * fails after the bytes were stored removes them.
 */
async function receiveForm(
  request: FastifyRequest,
  files: FileService,
): Promise<{ received: ReceivedUpload; fields: FileFields }> {
  let received: ReceivedUpload | undefined;
  const values = new Map<FieldName, string>();
  try {
    const parts = request.parts({
      // One byte over the limit is enough to know the file is too large; the service says so.
      limits: { fileSize: files.maxBytes + 1, files: 2, fields: 10, fieldSize: 64 * 1024, parts: 12 },
      // By name, not by type (busboy's default takes any octet-stream part for a file, and a file without a
      // filename for a field): curl's `-F file=<h.txt` and `-F 'purpose=…;type=application/octet-stream'` are forms
      // as valid as the SDKs'.
      isPartAFile: (name) => name === 'file',
    });
    for await (const part of fromClient(parts)) {
      if (part.type === 'file') {
        if (received !== undefined)
          throw invalidRequest('Only one file can be uploaded per request.', 'file', 'invalid_value');
        // As in JSON bodies (api/app.ts): PostgreSQL cannot store a NUL. A file part may have no filename at all,
        // whatever its type says.
        const filename = uploadedName((part.filename as string | undefined) ?? '');
        if (filename.includes('\u0000'))
          throw invalidRequest(
            "Invalid 'file': its filename contains a NUL character, which is not accepted.",
            'file',
            'invalid_value',
          );
        received = await files.receive(request.scope, filename, fromClient(part.file));
        continue;
      }
      const name = part.fieldname as FieldName;
      if (!FIELDS.includes(name)) throw unknownParameter(part.fieldname);
      if (values.has(name)) throw invalidRequest(`Duplicate parameter: '${name}'.`, name, 'invalid_value');
      values.set(name, String(part.value));
    }
    if (received === undefined)
      throw new ApiError(400, "Missing required parameter: 'file'.", {
        param: 'file',
        code: 'missing_required_parameter',
      });
    return { received, fields: parseFields(values) };
  } catch (error) {
    discardRest(request.raw);
    await received?.abandon();
    throw multipartError(error, files.maxBytes);
  }
}

function parseFields(values: Map<FieldName, string>): FileFields {
  const purpose = values.get('purpose');
  if (purpose === undefined)
    throw new ApiError(400, "Missing required parameter: 'purpose'.", {
      param: 'purpose',
      code: 'missing_required_parameter',
    });
  if (!(UPLOAD_PURPOSES as readonly string[]).includes(purpose))
    throw invalidRequest(
      `Invalid value for 'purpose': '${purpose}'. Supported values are: ${UPLOAD_PURPOSES.map((p) => `'${p}'`).join(', ')}.`,
      'purpose',
      'invalid_value',
    );
  const anchor = values.get('expires_after[anchor]');
  const seconds = values.get('expires_after[seconds]');
  if (anchor === undefined && seconds === undefined)
    return { purpose, expiresAfterSeconds: purpose === 'batch' ? BATCH_FILE_EXPIRY_SECONDS : null };
  if (anchor === undefined || seconds === undefined) {
    const missing = anchor === undefined ? 'expires_after.anchor' : 'expires_after.seconds';
    throw new ApiError(400, `Missing required parameter: '${missing}'.`, {
      param: missing,
      code: 'missing_required_parameter',
    });
  }
  if (anchor !== 'created_at')
    throw invalidRequest(
      `Invalid value: '${anchor}'. Supported values are: 'created_at'.`,
      'expires_after.anchor',
      'invalid_value',
    );
  const value = integerParameter('expires_after.seconds', seconds, FILE_EXPIRY_MIN_SECONDS, FILE_EXPIRY_MAX_SECONDS);
  return { purpose, expiresAfterSeconds: value };
}

function unknownParameter(name: string): ApiError {
  return new ApiError(400, `Unknown parameter: '${name}'.`, { param: name, code: 'unknown_parameter' });
}

/** A failure of the request's body (malformed multipart, a limit, a client gone), as opposed to the server's. */
class FormError extends Error {
  readonly code: unknown;
  constructor(cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.code = (cause as { code?: unknown } | undefined)?.code;
  }
}

/** What the client sends, with its failures marked as the client's (FormError). */
async function* fromClient<T>(source: AsyncIterable<T>): AsyncIterable<T> {
  try {
    yield* source;
  } catch (error) {
    throw error instanceof ApiError ? error : new FormError(error);
  }
}

/** @fastify/multipart's and busboy's errors as the client's mistakes they are; the server's own stay 500s. */
function multipartError(error: unknown, maxBytes: number): unknown {
  if (!(error instanceof FormError)) return error;
  const code = error.code;
  switch (code) {
    case 'FST_REQ_FILE_TOO_LARGE':
      return fileTooLarge(maxBytes);
    case 'FST_FILES_LIMIT':
      return invalidRequest('Only one file can be uploaded per request.', 'file', 'invalid_value');
    case 'FST_PARTS_LIMIT':
    case 'FST_FIELDS_LIMIT':
      return invalidRequest(
        `Too many form fields: an upload takes 'file', 'purpose' and 'expires_after'.`,
        null,
        'invalid_value',
      );
    case 'FST_PROTO_VIOLATION':
      return invalidRequest('Invalid form field name.', null, 'invalid_value');
  }
  return invalidRequest(`Could not parse the multipart/form-data body: ${error.message}.`, null, 'invalid_multipart');
}

/**
 * A file part's filename as the client named the file: FormData (the SDKs', a browser's) sends a quote and line
 * breaks as `%22`, `%0A`, `%0D`, as the HTML standard's multipart encoding says, and the node SDK's streaming
 * encoder (a file stream) every control character, a quote and a backslash; a name that held such an escape
 * literally cannot be told apart. A path is its last part; no filename means one.
 */
function uploadedName(filename: string): string {
  const decoded = filename.replace(/%[01][0-9a-f]|%7f|%22|%5c/gi, (escaped) => decodeURIComponent(escaped));
  // Without the directories before it, as busboy drops those it sees unescaped (a browser may send a whole path).
  const name = decoded.slice(Math.max(decoded.lastIndexOf('/'), decoded.lastIndexOf('\\')) + 1);
  return name || 'file';
}

/**
 * The download's Content-Disposition: `filename` for every client (anything outside printable ASCII, and quotes and
 * backslashes, become `_`), and the name as it is in `filename*` (RFC 6266) when that changed it.
 */
function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  if (ascii === name) return `attachment; filename="${ascii}"`;
  // A lone surrogate (not UTF-16 of any character) would make encodeURIComponent throw.
  const wellFormed = name.replace(/\p{Cs}/gu, '\uFFFD');
  const encoded = encodeURIComponent(wellFormed).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

/**
 * The file a path names. Any id is looked up, whatever its form: the Files API answers one it does not have with a
 * 404 (`No such File object: fake_id`), as OpenAI did, where the other APIs refuse an id without its prefix.
 */
function fileId(params: unknown): string {
  return (params as { file_id: string }).file_id;
}
