import { z } from 'zod';

const projectName = z.string().trim().min(1).max(256);

/** `ProjectCreateRequest` of OpenAI's admin API. */
export const createProjectRequest = z.strictObject({ name: projectName });

/** `ProjectUpdateRequest` */
export const modifyProjectRequest = z.strictObject({ name: projectName });

/** A project API key's creation (assistd's admin API: OpenAI's creates keys only through service accounts). */
export const createApiKeyRequest = z.strictObject({ name: z.string().trim().min(1).max(256).optional() });
