import { PIN_REASONS, describePinReason, isPinReason } from './pinReasons.js';

test('reasons are unique snake_case label values, each with a sentence', () => {
  expect(new Set(PIN_REASONS).size).toBe(PIN_REASONS.length);
  for (const reason of PIN_REASONS) {
    expect(reason).toMatch(/^[a-z][a-z_]*[a-z]$/);
    expect(describePinReason(reason).length).toBeGreaterThan(20);
    expect(isPinReason(reason)).toBe(true);
  }
  expect(isPinReason('temporary_objects')).toBe(false);
});
