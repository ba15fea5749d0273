import type { Kysely, Selectable } from 'kysely';
import { notFound } from '../../domain/errors.ts';
import type { ApiKey, Project } from '../../domain/projects.ts';
import type { KeyCredentials, OrganizationPageRequest, Page, ProjectRecords } from '../store.ts';
import type { ApiKeysTable, Database, ProjectsTable } from './schema.ts';

/** Projects and API keys (see ProjectRecords in store.ts); lists go by insertion order (`seq`), oldest first. */
export class SqlProjectRecords implements ProjectRecords {
  private readonly db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.db = db;
  }

  async createProject(project: Project): Promise<void> {
    await this.db.insertInto('projects').values(project).execute();
  }

  async getProject(id: string): Promise<Project | undefined> {
    const row = await this.db.selectFrom('projects').selectAll().where('id', '=', id).executeTakeFirst();
    return row && rowToProject(row);
  }

  async listProjects(page: OrganizationPageRequest, includeArchived: boolean): Promise<Page<Project>> {
    let query = this.db.selectFrom('projects').selectAll();
    if (!includeArchived) query = query.where('archived_at', 'is', null);
    if (page.after !== undefined) {
      const after = this.db.selectFrom('projects').select('seq').where('id', '=', page.after);
      query = query.where('seq', '>', after);
    }
    const rows = await query
      .orderBy('seq')
      .limit(page.limit + 1)
      .execute();
    return toPage(rows, page, rowToProject);
  }

  async updateProject(id: string, patch: Partial<Pick<Project, 'name'>>): Promise<Project | undefined> {
    const row = await this.db
      .updateTable('projects')
      .set(patch)
      .where('id', '=', id)
      .where('archived_at', 'is', null)
      .returningAll()
      .executeTakeFirst();
    return row && rowToProject(row);
  }

  async archiveProject(id: string, at: number): Promise<Project | undefined> {
    const row = await this.db
      .updateTable('projects')
      .set({ archived_at: at })
      .where('id', '=', id)
      .where('archived_at', 'is', null)
      .returningAll()
      .executeTakeFirst();
    return row && rowToProject(row);
  }

  async createKey(key: ApiKey, secretHash: string): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const project = await trx.selectFrom('projects').select('id').where('id', '=', key.project_id).executeTakeFirst();
      if (!project) throw notFound('project', key.project_id);
      await trx
        .insertInto('api_keys')
        .values({ ...key, secret_hash: secretHash })
        .execute();
    });
  }

  async getKey(projectId: string, id: string): Promise<ApiKey | undefined> {
    const row = await this.db
      .selectFrom('api_keys')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('id', '=', id)
      .executeTakeFirst();
    return row && rowToKey(row);
  }

  async listKeys(projectId: string, page: OrganizationPageRequest): Promise<Page<ApiKey>> {
    let query = this.db.selectFrom('api_keys').selectAll().where('project_id', '=', projectId);
    if (page.after !== undefined) {
      const after = this.db
        .selectFrom('api_keys')
        .select('seq')
        .where('project_id', '=', projectId)
        .where('id', '=', page.after);
      query = query.where('seq', '>', after);
    }
    const rows = await query
      .orderBy('seq')
      .limit(page.limit + 1)
      .execute();
    return toPage(rows, page, rowToKey);
  }

  async deleteKey(projectId: string, id: string): Promise<boolean> {
    const result = await this.db
      .deleteFrom('api_keys')
      .where('project_id', '=', projectId)
      .where('id', '=', id)
      .executeTakeFirst();
    return result.numDeletedRows > 0n;
  }

  async keyCredentials(id: string): Promise<KeyCredentials | undefined> {
    const row = await this.db
      .selectFrom('api_keys')
      .innerJoin('projects', 'projects.id', 'api_keys.project_id')
      .select(['api_keys.project_id', 'api_keys.secret_hash', 'projects.archived_at'])
      .where('api_keys.id', '=', id)
      .executeTakeFirst();
    return row && { projectId: row.project_id, secretHash: row.secret_hash, projectArchived: row.archived_at !== null };
  }

  async touchKey(id: string, at: number): Promise<void> {
    await this.db.updateTable('api_keys').set({ last_used_at: at }).where('id', '=', id).execute();
  }
}

/** An unknown `after` id matches no row (`seq > null`), so the page is empty, as for the other lists' unknown cursor. */
function toPage<R, T>(rows: R[], page: OrganizationPageRequest, toObject: (row: R) => T): Page<T> {
  const hasMore = rows.length > page.limit;
  return { data: (hasMore ? rows.slice(0, page.limit) : rows).map(toObject), hasMore };
}

function rowToProject(row: Selectable<ProjectsTable>): Project {
  return {
    id: row.id,
    name: row.name,
    created_at: Number(row.created_at),
    archived_at: row.archived_at === null ? null : Number(row.archived_at),
  };
}

function rowToKey(row: Selectable<ApiKeysTable>): ApiKey {
  return {
    id: row.id,
    project_id: row.project_id,
    name: row.name,
    redacted_value: row.redacted_value,
    created_at: Number(row.created_at),
    last_used_at: row.last_used_at === null ? null : Number(row.last_used_at),
  };
}
