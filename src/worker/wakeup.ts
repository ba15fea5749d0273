/**
 * The sleep of a claim loop between claims: it ends after `ms`, or at once when `wake` is called (work announced, a
 * slot freed). A wake-up while the loop is busy claiming is not lost: the next sleep returns at once.
 */
export class Wakeup {
  private requested = false;
  private resolve: (() => void) | undefined;

  wake(): void {
    this.requested = true;
    this.resolve?.();
  }

  async sleep(ms: number): Promise<void> {
    if (this.requested) {
      this.requested = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.resolve = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.resolve = undefined;
    this.requested = false;
  }
}
