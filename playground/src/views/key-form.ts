import { html } from 'htm/preact';
import { useState } from 'preact/hooks';

/**
 * Asks for the project's API key. It is kept in this tab's session storage only, and sent in the Authorization header
 * of every request.
 */
export function KeyForm({ onSave }: { onSave: (key: string) => void }) {
  const [key, setKey] = useState('');
  return html`
    <main class="main key-page">
      <h1>assistd playground</h1>
      <form
        class="card stack"
        onSubmit=${(event: Event) => {
          event.preventDefault();
          if (key.trim() !== '') onSave(key.trim());
        }}
      >
        <p>Enter the project's API key. It stays in this browser tab (session storage) until you close it.</p>
        <label for="api-key">API key</label>
        <input
          id="api-key"
          type="password"
          autocomplete="off"
          required
          value=${key}
          onInput=${(event: Event) => setKey((event.currentTarget as HTMLInputElement).value)}
        />
        <div class="actions"><button type="submit">Save key</button></div>
      </form>
    </main>
  `;
}
