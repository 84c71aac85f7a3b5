/**
 * Which requests the server fails at a given fail rate.
 *
 * An independent coin flip per request (the first way) leaves short runs without a single fault
 * now and then: a Maxxo fault run makes ~170-250 API calls (the bytes go over rsync), and at 2 %
 * none of them failed in one to three runs of a hundred, so the fault tests' "faults were really
 * injected" failed at random (CI, 2026-12-07). Here each request adds the rate to a credit and a
 * fault falls when the credit reaches a threshold drawn anew (uniform in 0..2, mean 1) after each
 * fault: the places stay random (gaps from 1 to 2/rate requests, back-to-back faults possible),
 * the count follows the rate (any 2/rate requests in a row hold at least one fault), and a rate
 * of 1 fails every request.
 */
export function faultSchedule(random: () => number = Math.random): (rate: number) => boolean {
  let rateSeen = 0;
  let credit = 0;
  let threshold = 0;
  return (rate) => {
    if (!(rate > 0)) return false;
    if (rate >= 1) return true;
    if (rate !== rateSeen) {
      // A new rate starts a fresh schedule, so the first fault comes as the new rate says.
      rateSeen = rate;
      credit = 0;
      threshold = 2 * random();
    }
    credit += rate;
    if (credit < threshold) return false;
    credit -= threshold;
    threshold = 2 * random();
    return true;
  };
}
