import { html } from 'htm/preact';
import type { Message } from 'openai/resources/beta/threads/messages';
import { useEffect, useState } from 'preact/hooks';
import { ErrorAlert, FileImage } from '../components.ts';
import { downloadFile, fileInfo } from '../files.ts';
import { type CitedFile, FILE_LINK, markdownHtml, resolveAnnotations } from '../markdown.ts';

/**
 * One message of a thread as an `article` named "user message" / "assistant message": its text as sanitized Markdown
 * with citations as numbered links, its images, and under it the list of the files it cites ("Sources").
 */
export function MessageView({ message }: { message: Message }) {
  const [error, setError] = useState<unknown>();
  const cited: CitedFile[] = [];
  const parts = message.content.map((part, index) => {
    switch (part.type) {
      case 'text':
        return html`<div class="markdown" key=${index} dangerouslySetInnerHTML=${{
          __html: markdownHtml(resolveAnnotations(part.text, cited)),
        }} />`;
      case 'image_file':
        return html`<${FileImage} key=${index} fileId=${part.image_file.file_id} />`;
      case 'image_url':
        // Not shown inline: the page loads nothing from another host.
        return html`<p key=${index}>Image: <a href=${part.image_url.url} rel="noreferrer">${part.image_url.url}</a></p>`;
      case 'refusal':
        return html`<p key=${index} class="refusal">${part.refusal}</p>`;
      default:
        return null;
    }
  });
  /** A click on a file link (a citation, a `sandbox:` link) downloads the file with the key. */
  const onClick = (event: MouseEvent) => {
    const link = (event.target as Element).closest('a');
    const target = link?.getAttribute('href') ?? '';
    if (!target.startsWith(FILE_LINK)) return;
    event.preventDefault();
    setError(undefined);
    downloadFile(target.slice(FILE_LINK.length)).catch(setError);
  };
  return html`
    <article aria-label=${`${message.role} message`} class=${`message ${message.role}`} onClick=${onClick}>
      <div class="message-role" aria-hidden="true">${message.role}</div>
      ${parts}
      ${cited.length > 0 && html`<${Sources} cited=${cited} onError=${setError} />`}
      <${ErrorAlert} error=${error} />
    </article>
  `;
}

function Sources({ cited, onError }: { cited: CitedFile[]; onError: (error: unknown) => void }) {
  return html`
    <ol class="sources" aria-label="Sources">
      ${cited.map(
        ({ fileId, number }) => html`
          <li key=${fileId} value=${number}>
            <button type="button" class="link" onClick=${() => downloadFile(fileId).catch(onError)}>
              <${FileName} fileId=${fileId} />
            </button>
          </li>
        `,
      )}
    </ol>
  `;
}

/** A file's name (its id until the name is known, or when the file is gone). */
function FileName({ fileId }: { fileId: string }) {
  const [name, setName] = useState(fileId);
  useEffect(() => {
    let current = true;
    fileInfo(fileId).then(
      (info) => current && setName(info.filename),
      () => undefined,
    );
    return () => {
      current = false;
    };
  }, [fileId]);
  return html`${name}`;
}
