;;; emacs_driver.el --- loaded after the docs' eglot snippet: does what a user does  -*- lexical-binding: t -*-
;; Writes what happened as JSON to $INT8WB_OUT. Every wait is bounded; the result says which step did
;; not happen. Batch Emacs has no command loop, so the waits run `post-command-hook' themselves (eglot-ensure
;; and flymake start from it).
(require 'cl-lib)
(require 'json)

(defvar int8wb-test-result nil)
(defvar int8wb-test-messages nil "Every echo-area message, newest first.")
(defun int8wb-test-put (key value) (setq int8wb-test-result (plist-put int8wb-test-result key value)))
(defun int8wb-test-finish ()
  (with-temp-file (getenv "INT8WB_OUT")
    (insert (json-encode (append int8wb-test-result (list :messages (vconcat (reverse int8wb-test-messages)))))))
  (kill-emacs 0))
(defun int8wb-test-seen (regexp)
  (cl-find-if (lambda (m) (string-match-p regexp m)) int8wb-test-messages))
(defun int8wb-test-wait (pred seconds)
  (let ((deadline (+ (float-time) seconds)) value)
    (while (and (not (setq value (funcall pred))) (< (float-time) deadline))
      (run-hooks 'post-command-hook)
      (accept-process-output nil 0.05))
    value))
;; what the user sees: eglot shows window/showMessage in the echo area
(advice-add 'message :around (lambda (orig format &rest args)
                               (let ((text (apply orig format args)))
                                 (when (stringp text) (push (substring-no-properties text) int8wb-test-messages))
                                 text)))
;; a step that errs (a jsonrpc timeout, an eglot error) ends the run with what it said
(run-at-time 55 nil (lambda () (int8wb-test-put :timeout t) (int8wb-test-finish)))

(defun int8wb-test-command (server command &rest args)
  (jsonrpc-request server :workspace/executeCommand (list :command command :arguments (vconcat args))))

(defun int8wb-test-run ()
  (let* ((ws (getenv "INT8WB_WS"))
         (broken (expand-file-name "digits/broken.calibration.toml" ws))
         (good (expand-file-name "digits/digits.calibration.toml" ws))
         server)
    (when (equal (getenv "INT8WB_MODE") "missing")  ; int8wb is not on exec-path
      (find-file broken)
      (find-file good)
      (run-hooks 'post-command-hook)  ; where eglot-ensure would connect
      (int8wb-test-put :servers (if (featurep 'eglot) (hash-table-count eglot--servers-by-project) 0))
      (int8wb-test-finish))
    ;; 1. a spec with a problem: its diagnostic arrives (flymake, as eglot shows it)
    (find-file broken)
    (setq server (int8wb-test-wait (lambda () (and (eglot-managed-p) (eglot-current-server))) 15))
    (int8wb-test-put :managed (and server t))
    (unless server (int8wb-test-finish))
    (int8wb-test-put :root (project-root (eglot--project server)))
    (let ((diags (int8wb-test-wait (lambda () (flymake-start) (flymake-diagnostics)) 15)))
      (int8wb-test-put :codes (vconcat (mapcar (lambda (d) (plist-get (cdr (assoc 'eglot-lsp-diag (flymake-diagnostic-data d))) :code))
                                               diags))))
    ;; 2. the calibrate code action, picked from eglot's menu, runs a job to its end
    (find-file good)
    (int8wb-test-wait (lambda () (eglot-managed-p)) 10)
    (int8wb-test-put :same_server (eq server (eglot-current-server)))
    ;; a hover on the model line, in the format eglot asked for (plaintext: no markdown-mode here)
    (goto-char (point-min))
    (re-search-forward "^model")
    (let ((contents (plist-get (jsonrpc-request server :textDocument/hover (eglot--TextDocumentPositionParams))
                               :contents)))
      (int8wb-test-put :hover_kind (plist-get contents :kind))
      (int8wb-test-put :hover (plist-get contents :value)))
    (let ((titles nil) (last-nonmenu-event ?\r))  ; as from the keyboard: a completing-read, not a popup
      (cl-letf (((symbol-function 'completing-read)
                 (lambda (_prompt items &rest _)
                   (setq titles (mapcar #'car items))
                   "Calibrate with int8wb")))
        (eglot-code-actions (point-min) (point-min) nil t))
      (int8wb-test-put :actions (vconcat titles)))
    (int8wb-test-put :ended (and (int8wb-test-wait (lambda () (int8wb-test-seen ": \\(done\\|failed\\): ")) 45) t))
    (int8wb-test-put :end_message (int8wb-test-seen ": \\(done\\|failed\\): "))
    (let* ((job (aref (int8wb-test-command server "int8wb.jobs") 0))
           (summary (plist-get job :summary))
           (report (and (listp summary) (plist-get summary :report))))
      (int8wb-test-put :state (plist-get job :state))
      (int8wb-test-put :report report)
      ;; 3. "Open report" as M-x eglot-execute-command runs it: answered at once, eglot 1.9 gets the path
      (when report
        (let ((t0 (float-time)))
          (condition-case err
              (int8wb-test-put :open_report (eglot-execute-command server 'int8wb.openReport (vector report)))
            (error (int8wb-test-put :open_report_error (error-message-string err))))
          (int8wb-test-put :open_report_s (- (float-time) t0)))
        (int8wb-test-put :report_message (int8wb-test-wait (lambda () (int8wb-test-seen "the report is")) 5))))
    ;; 4. a settings change takes effect while the server runs
    (setq-default eglot-workspace-configuration '((:int8wb . (:rescanSeconds 7))))
    (eglot-signal-didChangeConfiguration server)
    (int8wb-test-put :settings_live
                     (and (int8wb-test-wait
                           (lambda () (eql 7.0 (plist-get (plist-get (int8wb-test-command server "int8wb.status") :settings)
                                                           :rescanSeconds)))
                           5)
                          t))
    (int8wb-test-put :stderr (with-current-buffer (jsonrpc-stderr-buffer server) (buffer-string)))
    ;; 5. shutdown: the server answers (else eglot-shutdown signals a timeout), then jsonrpc 1.0.14 kills it
    (let ((t0 (float-time)) (process (jsonrpc--process server)))
      (condition-case err
          (eglot-shutdown server)
        (error (int8wb-test-put :shutdown_error (error-message-string err))))
      (int8wb-test-wait (lambda () (memq (process-status process) '(exit signal))) 10)
      (int8wb-test-put :shutdown_s (- (float-time) t0))
      (int8wb-test-put :exited (and (memq (process-status process) '(exit signal)) t)))
    (int8wb-test-finish)))

(condition-case err
    (int8wb-test-run)
  (error (int8wb-test-put :error (error-message-string err)) (int8wb-test-finish)))
