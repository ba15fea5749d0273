/**
 * The admin API's part of /v1/openapi.json (openapi.ts): its operations and schemas, named and shaped as in
 * OpenAI's admin API where they exist there (`Project`, `ProjectListResponse`, `ProjectApiKey` …).
 */
type Json = Record<string, unknown>;

export interface DocumentedOperation {
  method: 'get' | 'post' | 'delete';
  path: string;
  /** The Fastify route that answers it. */
  route: string;
  operation: Json;
}

const ADMIN = { tags: ['Projects'], security: [{ AdminApiKey: [] }] };
const projectId = pathParameter('project_id', 'The ID of the project.');
const keyId = pathParameter('key_id', 'The ID of the API key.');
const pageParameters = [
  queryParameter('limit', 'How many objects to return, 1 to 100 (default 20).', { type: 'integer' }),
  queryParameter('after', 'The ID of the last object of the previous page.', { type: 'string' }),
];

function pathParameter(name: string, description: string): Json {
  return { name, in: 'path', required: true, schema: { type: 'string' }, description };
}

function queryParameter(name: string, description: string, schema: Json): Json {
  return { name, in: 'query', required: false, schema, description };
}

function body(schema: string, required = true): Json {
  return { required, content: { 'application/json': { schema: { $ref: `#/components/schemas/${schema}` } } } };
}

function answers(schema: string): Json {
  return {
    '200': {
      description: 'OK',
      content: { 'application/json': { schema: { $ref: `#/components/schemas/${schema}` } } },
    },
  };
}

export const ORGANIZATION_OPERATIONS: DocumentedOperation[] = [
  {
    method: 'get',
    path: '/organization/projects',
    route: '/v1/organization/projects',
    operation: {
      ...ADMIN,
      operationId: 'list-projects',
      summary: 'Lists the projects, oldest first (admin key).',
      parameters: [
        ...pageParameters,
        queryParameter('include_archived', 'Whether archived projects are listed too.', { type: 'boolean' }),
      ],
      responses: answers('ProjectListResponse'),
    },
  },
  {
    method: 'post',
    path: '/organization/projects',
    route: '/v1/organization/projects',
    operation: {
      ...ADMIN,
      operationId: 'create-project',
      summary: 'Creates a project (admin key).',
      requestBody: body('ProjectCreateRequest'),
      responses: answers('Project'),
    },
  },
  {
    method: 'get',
    path: '/organization/projects/{project_id}',
    route: '/v1/organization/projects/:project_id',
    operation: {
      ...ADMIN,
      operationId: 'retrieve-project',
      summary: 'Retrieves a project (admin key).',
      parameters: [projectId],
      responses: answers('Project'),
    },
  },
  {
    method: 'post',
    path: '/organization/projects/{project_id}',
    route: '/v1/organization/projects/:project_id',
    operation: {
      ...ADMIN,
      operationId: 'modify-project',
      summary: 'Renames a project (admin key).',
      parameters: [projectId],
      requestBody: body('ProjectUpdateRequest'),
      responses: answers('Project'),
    },
  },
  {
    method: 'post',
    path: '/organization/projects/{project_id}/archive',
    route: '/v1/organization/projects/:project_id/archive',
    operation: {
      ...ADMIN,
      operationId: 'archive-project',
      summary: 'Archives a project: its keys stop working at once; its objects are kept (admin key).',
      parameters: [projectId],
      responses: answers('Project'),
    },
  },
  {
    method: 'get',
    path: '/organization/projects/{project_id}/api_keys',
    route: '/v1/organization/projects/:project_id/api_keys',
    operation: {
      ...ADMIN,
      operationId: 'list-project-api-keys',
      summary: "Lists a project's API keys, redacted, oldest first (admin key).",
      parameters: [projectId, ...pageParameters],
      responses: answers('ProjectApiKeyListResponse'),
    },
  },
  {
    method: 'post',
    path: '/organization/projects/{project_id}/api_keys',
    route: '/v1/organization/projects/:project_id/api_keys',
    operation: {
      ...ADMIN,
      operationId: 'create-project-api-key',
      tags: ['Projects', 'assistd'],
      summary: 'Creates an API key of the project; the response is the only place its value is shown (admin key).',
      parameters: [projectId],
      requestBody: body('ProjectApiKeyCreateRequest', false),
      responses: answers('ProjectApiKeyWithValue'),
    },
  },
  {
    method: 'get',
    path: '/organization/projects/{project_id}/api_keys/{key_id}',
    route: '/v1/organization/projects/:project_id/api_keys/:key_id',
    operation: {
      ...ADMIN,
      operationId: 'retrieve-project-api-key',
      summary: 'Retrieves an API key, redacted (admin key).',
      parameters: [projectId, keyId],
      responses: answers('ProjectApiKey'),
    },
  },
  {
    method: 'delete',
    path: '/organization/projects/{project_id}/api_keys/{key_id}',
    route: '/v1/organization/projects/:project_id/api_keys/:key_id',
    operation: {
      ...ADMIN,
      operationId: 'delete-project-api-key',
      summary: 'Deletes an API key: every server process refuses it from its next request on (admin key).',
      parameters: [projectId, keyId],
      responses: answers('ProjectApiKeyDeleteResponse'),
    },
  },
];

const project: Json = {
  type: 'object',
  description: 'A project: every object belongs to one, and is seen only with that project’s keys.',
  properties: {
    id: { type: 'string' },
    object: { type: 'string', enum: ['organization.project'] },
    name: { type: 'string' },
    created_at: { type: 'integer' },
    archived_at: { type: ['integer', 'null'] },
    status: { type: 'string', enum: ['active', 'archived'] },
  },
  required: ['id', 'object', 'name', 'created_at', 'archived_at', 'status'],
  additionalProperties: false,
};

const apiKeyProperties: Json = {
  id: { type: 'string' },
  object: { type: 'string', enum: ['organization.project.api_key'] },
  name: { type: 'string' },
  redacted_value: { type: 'string', description: 'The start and the end of the key, e.g. `sk-proj-a1B2…xY9z`.' },
  created_at: { type: 'integer' },
  last_used_at: { type: ['integer', 'null'] },
};
const apiKeyRequired = ['id', 'object', 'name', 'redacted_value', 'created_at', 'last_used_at'];

function list(item: string): Json {
  return {
    type: 'object',
    properties: {
      object: { type: 'string', enum: ['list'] },
      data: { type: 'array', items: { $ref: `#/components/schemas/${item}` } },
      first_id: { type: ['string', 'null'] },
      last_id: { type: ['string', 'null'] },
      has_more: { type: 'boolean' },
    },
    required: ['object', 'data', 'first_id', 'last_id', 'has_more'],
  };
}

const name = { type: 'string', minLength: 1, maxLength: 256 };

export const ORGANIZATION_SCHEMAS: Json = {
  Project: project,
  ProjectListResponse: list('Project'),
  ProjectCreateRequest: {
    type: 'object',
    properties: { name },
    required: ['name'],
    additionalProperties: false,
  },
  ProjectUpdateRequest: {
    type: 'object',
    properties: { name },
    required: ['name'],
    additionalProperties: false,
  },
  ProjectApiKey: {
    type: 'object',
    properties: apiKeyProperties,
    required: apiKeyRequired,
    additionalProperties: false,
  },
  ProjectApiKeyWithValue: {
    type: 'object',
    properties: { ...apiKeyProperties, value: { type: 'string', description: 'The key: shown here only.' } },
    required: [...apiKeyRequired, 'value'],
    additionalProperties: false,
  },
  ProjectApiKeyCreateRequest: {
    type: 'object',
    properties: { name },
    additionalProperties: false,
  },
  ProjectApiKeyListResponse: list('ProjectApiKey'),
  ProjectApiKeyDeleteResponse: {
    type: 'object',
    properties: {
      object: { type: 'string', enum: ['organization.project.api_key.deleted'] },
      id: { type: 'string' },
      deleted: { type: 'boolean' },
    },
    required: ['object', 'id', 'deleted'],
  },
};
