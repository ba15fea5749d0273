import type { FastifyInstance } from 'fastify';
import { invalidRequest } from '../../domain/errors.ts';
import type { OrganizationPageRequest } from '../../storage/store.ts';
import type { ProjectService } from '../../tenancy/project-service.ts';
import { pathId } from '../ids.ts';
import { DEFAULT_LIMIT, integerParameter, MAX_LIMIT, single, toListObject } from '../pagination.ts';
import { createApiKeyRequest, createProjectRequest, modifyProjectRequest } from '../schemas/organization.ts';
import { serializeApiKey, serializeProject } from '../serializers.ts';
import { parseBody } from '../validation.ts';

/**
 * The admin API, shaped like OpenAI's `/v1/organization/projects` where it fits: projects (create, list, retrieve,
 * modify, archive) and their API keys (create — the only time the key's value is shown — list, retrieve, delete).
 * Only the admin key reaches these routes (app.ts `authorize`).
 */
export function registerOrganizationRoutes(app: FastifyInstance, projects: ProjectService): void {
  app.post('/v1/organization/projects', async (request) => {
    const body = parseBody(createProjectRequest, request.body);
    return serializeProject(await projects.create(body.name));
  });

  app.get('/v1/organization/projects', async (request) => {
    const query = request.query as Record<string, unknown>;
    const includeArchived = booleanParameter('include_archived', single(query, 'include_archived'));
    return toListObject(await projects.list(organizationPage(query), includeArchived), serializeProject);
  });

  app.get('/v1/organization/projects/:project_id', async (request) => {
    return serializeProject(await projects.get(pathId('project', request.params, 'project_id')));
  });

  app.post('/v1/organization/projects/:project_id', async (request) => {
    const id = pathId('project', request.params, 'project_id');
    const body = parseBody(modifyProjectRequest, request.body);
    return serializeProject(await projects.rename(id, body.name));
  });

  app.post('/v1/organization/projects/:project_id/archive', async (request) => {
    return serializeProject(await projects.archive(pathId('project', request.params, 'project_id')));
  });

  app.post('/v1/organization/projects/:project_id/api_keys', async (request) => {
    const projectId = pathId('project', request.params, 'project_id');
    const body = parseBody(createApiKeyRequest, request.body ?? {});
    const { key, value } = await projects.createKey(projectId, body.name ?? 'Secret key');
    return { ...serializeApiKey(key), value };
  });

  app.get('/v1/organization/projects/:project_id/api_keys', async (request) => {
    const projectId = pathId('project', request.params, 'project_id');
    const page = organizationPage(request.query as Record<string, unknown>);
    return toListObject(await projects.listKeys(projectId, page), serializeApiKey);
  });

  app.get('/v1/organization/projects/:project_id/api_keys/:key_id', async (request) => {
    const projectId = pathId('project', request.params, 'project_id');
    return serializeApiKey(await projects.getKey(projectId, pathId('apiKey', request.params, 'key_id')));
  });

  app.delete('/v1/organization/projects/:project_id/api_keys/:key_id', async (request) => {
    const projectId = pathId('project', request.params, 'project_id');
    const id = pathId('apiKey', request.params, 'key_id');
    await projects.deleteKey(projectId, id);
    return { object: 'organization.project.api_key.deleted', id, deleted: true };
  });
}

/** `limit` (1–100, default 20) and `after`, as OpenAI's admin lists: oldest first. */
function organizationPage(query: Record<string, unknown>): OrganizationPageRequest {
  const limit = single(query, 'limit');
  const after = single(query, 'after');
  return {
    limit: limit === undefined ? DEFAULT_LIMIT : integerParameter('limit', limit, 1, MAX_LIMIT),
    after: after === undefined || after === '' ? undefined : after,
  };
}

function booleanParameter(name: string, raw: string | undefined): boolean {
  if (raw === undefined || raw === 'false') return false;
  if (raw === 'true') return true;
  throw invalidRequest(
    `Invalid '${name}': expected 'true' or 'false', but got '${raw}' instead.`,
    name,
    'invalid_value',
  );
}
