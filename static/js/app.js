// Behaviour shared by every page. Inline scripts are forbidden by the content security policy.
document.addEventListener("change", (event) => {
  if (event.target.matches("select[data-autosubmit]") && event.target.value) {
    event.target.form.submit();
  }
});
