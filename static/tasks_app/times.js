// Shows every <time datetime="…"> in the reader's own time zone and language ("6 Dec 2026, 04:59:28");
// the server wrote it in UTC, which stays in the tooltip.

const format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

for (const element of document.querySelectorAll("time[datetime]")) {
  const moment = new Date(element.dateTime);
  if (Number.isNaN(moment.getTime())) continue;
  element.title = element.textContent;
  element.textContent = format.format(moment);
}
