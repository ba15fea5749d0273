import { unixSeconds } from '../domain/clock.ts';
import { invalidRequest, notFound } from '../domain/errors.ts';
import { newId } from '../domain/ids.ts';
import { type ApiKey, DEFAULT_PROJECT_ID, type Project } from '../domain/projects.ts';
import type { OrganizationPageRequest, Page, ProjectRecords } from '../storage/store.ts';
import { generateKey, hashSecret } from './api-keys.ts';

/**
 * What the admin API (api/routes/organization.ts) and the CLI (`assistd projects …`, `assistd keys …`) do with
 * projects and keys: the rules are here once, the records in storage.
 */
export class ProjectService {
  private readonly records: ProjectRecords;

  constructor(records: ProjectRecords) {
    this.records = records;
  }

  async create(name: string): Promise<Project> {
    const project: Project = { id: newId('project'), name, created_at: unixSeconds(), archived_at: null };
    await this.records.createProject(project);
    return project;
  }

  async get(id: string): Promise<Project> {
    const project = await this.records.getProject(id);
    if (!project) throw notFound('project', id);
    return project;
  }

  list(page: OrganizationPageRequest, includeArchived: boolean): Promise<Page<Project>> {
    return this.records.listProjects(page, includeArchived);
  }

  /** An archived project cannot be changed: "Archived projects cannot be used or updated" (OpenAI's admin API). */
  async rename(id: string, name: string): Promise<Project> {
    const project = await this.records.updateProject(id, { name });
    if (project) return project;
    await this.get(id); // no such project: a 404
    throw invalidRequest(`Project ${id} is archived: it cannot be changed.`, 'project_id', 'invalid_value');
  }

  /**
   * Archives the project: its keys stop working at once (Authenticator reads the project with the key); its objects
   * stay stored. The default project serves ASSISTD_API_KEY and key-less servers, so it is never archived.
   */
  async archive(id: string): Promise<Project> {
    if (id === DEFAULT_PROJECT_ID)
      throw invalidRequest('The default project cannot be archived.', 'project_id', 'invalid_value');
    return (await this.records.archiveProject(id, unixSeconds())) ?? this.get(id);
  }

  /** A new key of an active project; its `value` is returned here and never again (only its hash is stored). */
  async createKey(projectId: string, name: string): Promise<{ key: ApiKey; value: string }> {
    const project = await this.get(projectId);
    if (project.archived_at !== null)
      throw invalidRequest(`Project ${projectId} is archived: it cannot have new keys.`, 'project_id', 'invalid_value');
    const generated = generateKey();
    const key: ApiKey = {
      id: generated.id,
      project_id: projectId,
      name,
      redacted_value: generated.redacted,
      created_at: unixSeconds(),
      last_used_at: null,
    };
    await this.records.createKey(key, await hashSecret(generated.value));
    return { key, value: generated.value };
  }

  async getKey(projectId: string, id: string): Promise<ApiKey> {
    await this.get(projectId);
    const key = await this.records.getKey(projectId, id);
    if (!key) throw notFound('API key', id);
    return key;
  }

  async listKeys(projectId: string, page: OrganizationPageRequest): Promise<Page<ApiKey>> {
    await this.get(projectId);
    return this.records.listKeys(projectId, page);
  }

  /** Deletes the key: every process refuses it from its next request on. */
  async deleteKey(projectId: string, id: string): Promise<void> {
    await this.get(projectId);
    if (!(await this.records.deleteKey(projectId, id))) throw notFound('API key', id);
  }
}
